// Fixture for the Hugging Face tests, written against the public API only.
//
//   tessera_hf_fixture export DIR MODEL   exports the preset MODEL right after initialisation to
//       DIR/init, trains it for three AdamW steps on fixed synthetic tokens, exports it to DIR/model,
//       and writes for check_hf.py:
//         DIR/inputs.txt        "B T", then the check tokens, then their targets (one line each)
//         DIR/tessera_loss.txt  the trained model's mean loss on them
//         DIR/train.txt         "steps B T beta1 beta2 eps weight_decay grad_clip", then per step a line
//                               "lr loss grad_norm", a line of inputs and a line of targets
//   tessera_hf_fixture import DIR SRC     builds the model SRC/config.json describes, imports SRC's
//       weights and writes its mean loss on DIR/inputs.txt's tokens to DIR/import_loss.txt.
#include <tessera/tessera.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
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

std::FILE* open_for_writing(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw tessera::config_error("cannot write " + path);
  return f;
}

tessera::Context& cpu_context() {
  static tessera::Context ctx([] {
    tessera::ContextOptions options;
    options.device = tessera::DevicePreference::cpu;
    options.cpu_threads = 2;
    options.announce = false;
    return options;
  }());
  return ctx;
}

std::unique_ptr<tessera::Model> f32_model(const tessera::ModelConfig& config) {
  tessera::ModelOptions options;
  options.precision = tessera::Precision::f32;
  return tessera::make_model(cpu_context(), config, options);
}

int export_and_train(const std::string& dir, const std::string& preset) {
  tessera::Context& ctx = cpu_context();
  const tessera::ModelConfig config = tessera::ModelConfig::preset(preset);
  std::unique_ptr<tessera::Model> owner = f32_model(config);
  tessera::Model& model = *owner;
  model.init_weights(1234);
  const tessera::AdamWConfig adamw;
  tessera::AdamW optimizer(ctx, model.params(), model.param_buffer(), model.grad_buffer(), adamw);
  tessera::export_hf(model, dir + "/init");

  const int B = 2, T = 64, steps = 3;
  const float lr = 1e-3f;
  std::FILE* train = open_for_writing(dir + "/train.txt");
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

  std::FILE* f = open_for_writing(dir + "/inputs.txt");
  std::fprintf(f, "%d %d\n", B, T);
  write_ints(f, inputs);
  write_ints(f, targets);
  std::fclose(f);
  f = open_for_writing(dir + "/tessera_loss.txt");
  std::fprintf(f, "%.9g\n", loss);
  std::fclose(f);
  std::printf("exported %s to %s/model; loss on the check tokens %.6f\n", config.describe().c_str(), dir.c_str(), loss);
  return 0;
}

int import_and_evaluate(const std::string& dir, const std::string& source) {
  std::ifstream in(dir + "/inputs.txt");
  int B = 0, T = 0;
  in >> B >> T;
  std::vector<int32_t> inputs(size_t(B * T)), targets(size_t(B * T));
  for (auto& t : inputs) in >> t;
  for (auto& t : targets) in >> t;
  if (!in) throw tessera::data_error("cannot read the check tokens", dir + "/inputs.txt");
  const tessera::ModelConfig config = tessera::read_hf_config(source);
  std::unique_ptr<tessera::Model> model = f32_model(config);
  tessera::import_hf(*model, source);
  const float loss = model->forward(inputs.data(), targets.data(), B, T);
  std::FILE* f = open_for_writing(dir + "/import_loss.txt");
  std::fprintf(f, "%.9g\n", loss);
  std::fclose(f);
  std::printf("imported %s from %s; loss on the check tokens %.6f\n", config.describe().c_str(), source.c_str(), loss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 || (std::strcmp(argv[1], "export") != 0 && std::strcmp(argv[1], "import") != 0)) {
    std::fprintf(stderr, "usage: %s export DIR MODEL | import DIR SOURCE_DIR\n", argv[0]);
    return 1;
  }
  try {
    if (std::strcmp(argv[1], "export") == 0) return export_and_train(argv[2], argv[3]);
    return import_and_evaluate(argv[2], argv[3]);
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "hf fixture: %s\n", e.what());
    return int(e.code());
  }
}
