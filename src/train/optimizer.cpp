#include "train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace bitttt::train {

float learning_rate(int64_t step, int64_t total_steps, int64_t warmup, float max_lr, float min_lr) {
    if (step < warmup) return max_lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
    const int64_t span = total_steps - 1 - warmup;
    if (span <= 0 || step >= total_steps - 1) return span <= 0 ? max_lr : min_lr;
    const double progress = static_cast<double>(step - warmup) / static_cast<double>(span);
    const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
    return static_cast<float>(min_lr + (max_lr - min_lr) * cosine);
}

double global_norm(const float* g, int64_t n) {
    constexpr int64_t kBlock = 1 << 16;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int64_t b = 0; b < blocks; ++b) {
        double s = 0.0;
        for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i)
            s += static_cast<double>(g[i]) * g[i];
        partial[static_cast<size_t>(b)] = s;
    }
    double total = 0.0;
    for (double s : partial) total += s;
    return std::sqrt(total);
}

void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n, float lr,
                  float grad_scale, int64_t t, bool decay, const AdamWConfig& c) {
    const float bc1 = 1.0f - std::pow(c.beta1, static_cast<float>(t));
    const float bc2 = 1.0f - std::pow(c.beta2, static_cast<float>(t));
    const float wd = decay ? c.weight_decay : 0.0f;
#pragma omp parallel for schedule(static) if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) {
        const float g = grads[i] * grad_scale;
        m[i] = c.beta1 * m[i] + (1.0f - c.beta1) * g;
        v[i] = c.beta2 * v[i] + (1.0f - c.beta2) * g * g;
        const float mhat = m[i] / bc1, vhat = v[i] / bc2;
        params[i] -= lr * (mhat / (std::sqrt(vhat) + c.eps) + wd * params[i]);
    }
}

}  // namespace bitttt::train
