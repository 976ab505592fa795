// Fixture for the Hugging Face export test, written against the public API only: exports a tiny
// GPT-2 right after initialisation to <dir>/init, trains it for three AdamW steps on fixed synthetic
// tokens, exports it to <dir>/model, and writes for check_hf_export.py:
//   <dir>/inputs.txt        "B T", then the check tokens, then their targets (one line each)
//   <dir>/tessera_loss.txt  the trained model's mean loss on them
//   <dir>/train.txt         "steps B T beta1 beta2 eps weight_decay grad_clip", then per step a line
//                           "lr loss grad_norm", a line of inputs and a line of targets
#include <tessera/tessera.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

// Deterministic pseudo-random tokens (a 64-bit LCG), so the fixture needs no data files.
std::vector<int32_t> synthetic_tokens(size_t count, uint64_t seed, int vocab_size) {
  std::vector<int32_t> out(count);
  uint64_t state = seed;
  for (auto& t : out) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    t = int32_t((state >> 33) % uint64_t(vocab_size));
  }
  return out;
}

void write_ints(std::FILE* f, const std::vector<int32_t>& v) {
  for (size_t i = 0; i < v.size(); ++i) std::fprintf(f, i ? " %d" : "%d", v[i]);
  std::fprintf(f, "\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 1;
  }
  const std::string dir = argv[1];
  try {
    tessera::ContextOptions options;
    options.device = tessera::DevicePreference::cpu;
    options.cpu_threads = 2;
    options.announce = false;
    tessera::Context ctx(options);

    const tessera::ModelConfig config = tessera::ModelConfig::preset("tiny");
    tessera::ModelOptions model_options;
    model_options.precision = tessera::Precision::f32;
    std::unique_ptr<tessera::Model> model_owner = tessera::make_model(ctx, config, model_options);
    tessera::Model& model = *model_owner;
    model.init_weights(1234);
    const tessera::AdamWConfig adamw;
    tessera::AdamW optimizer(ctx, model.params(), model.param_buffer(), model.grad_buffer(), adamw);
    tessera::export_hf(model, dir + "/init");

    const int B = 2, T = 64, steps = 3;
    const float lr = 1e-3f;
    std::FILE* train = std::fopen((dir + "/train.txt").c_str(), "w");
    if (!train) throw tessera::config_error("cannot write " + dir + "/train.txt");
    std::fprintf(train, "%d %d %d %.9g %.9g %.9g %.9g %.9g\n", steps, B, T, adamw.beta1, adamw.beta2, adamw.eps,
                 adamw.weight_decay, adamw.grad_clip);
    for (int step = 0; step < steps; ++step) {
      // One stream of B*T+1 tokens: targets are the inputs shifted by one.
      std::vector<int32_t> stream = synthetic_tokens(size_t(B * T + 1), 100 + step, config.vocab_size);
      std::vector<int32_t> inputs(stream.begin(), stream.end() - 1), targets(stream.begin() + 1, stream.end());
      model.zero_grad();
      float loss = model.forward(inputs.data(), targets.data(), B, T);
      model.backward();
      const float norm = optimizer.step(lr);
      std::printf("step %d: loss %.6f, grad norm %.6f\n", step, loss, norm);
      std::fprintf(train, "%.9g %.9g %.9g\n", lr, loss, norm);
      write_ints(train, inputs);
      write_ints(train, targets);
    }
    std::fclose(train);

    tessera::export_hf(model, dir + "/model");
    std::vector<int32_t> stream = synthetic_tokens(size_t(B * T + 1), 7, config.vocab_size);
    std::vector<int32_t> inputs(stream.begin(), stream.end() - 1), targets(stream.begin() + 1, stream.end());
    const float loss = model.forward(inputs.data(), targets.data(), B, T);

    std::FILE* f = std::fopen((dir + "/inputs.txt").c_str(), "w");
    if (!f) throw tessera::config_error("cannot write " + dir + "/inputs.txt");
    std::fprintf(f, "%d %d\n", B, T);
    write_ints(f, inputs);
    write_ints(f, targets);
    std::fclose(f);
    f = std::fopen((dir + "/tessera_loss.txt").c_str(), "w");
    if (!f) throw tessera::config_error("cannot write " + dir + "/tessera_loss.txt");
    std::fprintf(f, "%.9g\n", loss);
    std::fclose(f);
    std::printf("exported to %s/model; loss on the check tokens %.6f\n", dir.c_str(), loss);
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "hf fixture: %s\n", e.what());
    return int(e.code());
  }
  return 0;
}
