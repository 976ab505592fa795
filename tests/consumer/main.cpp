// Builds a tiny GPT-2 on the CPU through the installed public API and runs one training step.
#include <tessera/tessera.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  tessera::ContextOptions options;
  options.device = tessera::DevicePreference::cpu;
  options.cpu_threads = 1;
  tessera::Context ctx(options);

  tessera::ModelConfig config = tessera::ModelConfig::preset("tiny");
  std::unique_ptr<tessera::Model> model_owner = tessera::make_model(ctx, config);
  tessera::Model& model = *model_owner;
  model.init_weights(1234);

  const int B = 2, T = 16;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (7 * i + 3) % config.vocab_size;
    targets[i] = (7 * i + 10) % config.vocab_size;
  }
  float loss = model.forward(tokens.data(), targets.data(), B, T);
  std::printf("consumer: %lld parameters, loss %.4f (ln V = %.4f)\n",
              static_cast<long long>(model.params().parameter_count()), loss,
              std::log(double(config.vocab_size)));
  if (!std::isfinite(loss) || std::fabs(loss - std::log(double(config.vocab_size))) > 0.5) return 1;
  return 0;
}
