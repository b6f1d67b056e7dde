// Which face a pixel shows: the no-gradient visibility pass of styletalker/reconstruct/raster.py
// (the DMTet stage's and the prior's triangle rasterizer) in C++.
//
// mesh_visibility(fxy (F,3,2) float32, fz (F,3) float32, fids (M,) int64, W, H, pad, soft,
// max_pairs) -> (face (H*W,) int64, inside (H*W,) bool, band_pairs (1,) int64).
//
// Same rules and the same float32 arithmetic, in the same order, as raster._visibility_torch, so
// the same pixels get the same faces (tests/test_mesh_raster.py compares the two bit for bit):
// 1. every face of ``fids`` (in that order) tests the pixel centres of its bounding box (row by
//    row); inside its triangle (barycentrics >= 0, non-degenerate) the pixel's key is the
//    perspective-correct depth 1 / sum(b_i / z_i); the smallest key wins, ties to the first pair;
// 2. with ``soft`` (and some pixel covered), the uncovered pixels within ``pad`` pixels of a
//    covered one (the band) take the face nearest to them (distance to the triangle's edges),
//    among the faces whose bounding box dilated by ``pad`` reaches the band; ties to the first.
// ``band_pairs``: the face/pixel pairs step 2 enumerates (before it keeps the band's pixels);
// over ``max_pairs`` nothing is rasterized and raster.py raises its error.
// Compiled with -ffp-contract=off (no fused multiply-add but the one written out in norm2), like
// the Gaussian rasterizer.

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace {

inline float cross2(float ax, float ay, float bx, float by) { return ax * by - ay * bx; }

struct Box {
  int64_t x0, x1, y0, y1;
};

// raster._bbox for one face: pixels whose centres may lie within ``pad`` of the triangle
inline Box face_box(const float* t, int64_t pad, int64_t W, int64_t H) {
  const float lox = std::min(std::min(t[0], t[2]), t[4]), hix = std::max(std::max(t[0], t[2]), t[4]);
  const float loy = std::min(std::min(t[1], t[3]), t[5]), hiy = std::max(std::max(t[1], t[3]), t[5]);
  const float p = static_cast<float>(pad);
  auto clampl = [](float v, double lo, double hi) { return static_cast<int64_t>(std::min(std::max((double)v, lo), hi)); };
  Box b;
  b.x0 = clampl(std::floor((lox - 0.5f) - p), 0.0, double(W - 1));
  b.x1 = clampl(std::ceil((hix - 0.5f) + p), -1.0, double(W - 1));
  b.y0 = clampl(std::floor((loy - 0.5f) - p), 0.0, double(H - 1));
  b.y1 = clampl(std::ceil((hiy - 0.5f) + p), -1.0, double(H - 1));
  return b;
}

// squared length as torch's vector norm sums it: dx^2, then dy^2 added with a fused multiply-add
// where torch's CPU kernels use FMA (its AVX2 builds; this file is then compiled with -mfma)
inline float norm2(float dx, float dy) {
#ifdef __FMA__
  return std::fma(dy, dy, dx * dx);
#else
  return dx * dx + dy * dy;
#endif
}

// raster._point_tri_dist: distance from (px, py) to the triangle's three edge segments
inline float edge_distance(const float* t, float px, float py) {
  float out = 0.f;
  for (int k = 0; k < 3; ++k) {
    const float sx = t[2 * k], sy = t[2 * k + 1];
    const float ex = t[2 * ((k + 1) % 3)], ey = t[2 * ((k + 1) % 3) + 1];
    const float abx = ex - sx, aby = ey - sy;
    const float num = (px - sx) * abx + (py - sy) * aby;
    const float den = std::max(abx * abx + aby * aby, 1e-12f);
    float u = num / den;
    u = std::min(std::max(u, 0.f), 1.f);
    const float dx = (sx + u * abx) - px, dy = (sy + u * aby) - py;
    const float d = std::sqrt(norm2(dx, dy));
    out = k == 0 ? d : std::min(out, d);
  }
  return out;
}

}  // namespace

std::vector<torch::Tensor> mesh_visibility(torch::Tensor fxy, torch::Tensor fz, torch::Tensor fids, int64_t W,
                                           int64_t H, int64_t pad, bool soft, int64_t max_pairs) {
  TORCH_CHECK(fxy.dtype() == torch::kFloat32 && fz.dtype() == torch::kFloat32, "mesh_visibility: float32 only");
  TORCH_CHECK(fids.dtype() == torch::kInt64, "mesh_visibility: fids must be int64");
  fxy = fxy.contiguous();
  fz = fz.contiguous();
  fids = fids.contiguous();
  const float* XY = fxy.data_ptr<float>();
  const float* Z = fz.data_ptr<float>();
  const int64_t* ids = fids.data_ptr<int64_t>();
  const int64_t M = fids.numel(), P = W * H;
  auto face_t = torch::full({P}, -1, torch::kInt64);
  auto inside_t = torch::zeros({P}, torch::kBool);
  auto count_t = torch::zeros({1}, torch::kInt64);
  int64_t* face = face_t.data_ptr<int64_t>();
  bool* inside = inside_t.data_ptr<bool>();
  std::vector<float> key(P, std::numeric_limits<float>::infinity());

  // 1) hard coverage: the nearest surface of every pixel inside a triangle
  int64_t n_in = 0;
  float kmax = -std::numeric_limits<float>::infinity();
  for (int64_t m = 0; m < M; ++m) {
    const int64_t f = ids[m];
    const float* t = XY + 6 * f;
    const float* z = Z + 3 * f;
    const Box b = face_box(t, 0, W, H);
    if (b.x1 < b.x0 || b.y1 < b.y0) continue;
    const float v0x = t[0], v0y = t[1], v1x = t[2], v1y = t[3], v2x = t[4], v2y = t[5];
    const float area = cross2(v1x - v0x, v1y - v0y, v2x - v0x, v2y - v0y);
    const bool good = std::fabs(area) > 1e-10f;
    if (!good) continue;  // degenerate: never inside
    for (int64_t y = b.y0; y <= b.y1; ++y) {
      const float py = static_cast<float>(y) + 0.5f;
      for (int64_t x = b.x0; x <= b.x1; ++x) {
        const float px = static_cast<float>(x) + 0.5f;
        const float b0 = cross2(v2x - v1x, v2y - v1y, px - v1x, py - v1y) / area;
        const float b1 = cross2(v0x - v2x, v0y - v2y, px - v2x, py - v2y) / area;
        const float b2 = cross2(v1x - v0x, v1y - v0y, px - v0x, py - v0y) / area;
        if (!(b0 >= 0.f && b1 >= 0.f && b2 >= 0.f)) continue;
        const float zinv = (b0 / z[0] + b1 / z[1]) + b2 / z[2];
        const float k = 1.0f / std::max(zinv, 1e-8f);
        ++n_in;
        kmax = std::max(kmax, k);
        const int64_t pix = y * W + x;
        if (k < key[pix]) {
          key[pix] = k;
          face[pix] = f;
          inside[pix] = true;
        }
      }
    }
  }
  if (!soft || n_in == 0) return {face_t, inside_t, count_t};

  // 2) the band of uncovered pixels within ``pad`` (Chebyshev) of a covered one
  // summed-area table of a (H,W) 0/1 image, one row and column of zeros in front
  auto sat = [&](const auto* img) {
    std::vector<int64_t> s((H + 1) * (W + 1), 0);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        s[(y + 1) * (W + 1) + x + 1] =
            int64_t(img[y * W + x]) + s[y * (W + 1) + x + 1] + s[(y + 1) * (W + 1) + x] - s[y * (W + 1) + x];
    return s;
  };
  const std::vector<int64_t> cov = sat(inside);
  auto rect = [&](const std::vector<int64_t>& s, int64_t x0, int64_t x1, int64_t y0, int64_t y1) {
    return s[(y1 + 1) * (W + 1) + x1 + 1] - s[y0 * (W + 1) + x1 + 1] - s[(y1 + 1) * (W + 1) + x0] + s[y0 * (W + 1) + x0];
  };
  std::vector<uint8_t> band(P, 0);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      if (inside[y * W + x]) continue;
      const int64_t n = rect(cov, std::max<int64_t>(x - pad, 0), std::min(x + pad, W - 1), std::max<int64_t>(y - pad, 0),
                             std::min(y + pad, H - 1));
      band[y * W + x] = n > 0;
    }
  const std::vector<int64_t> bandsum = sat(band.data());
  // the faces whose dilated box reaches the band, and their pairs (raster.py's limit)
  std::vector<std::pair<int64_t, Box>> near;  // (face, its dilated box)
  int64_t total = 0;
  for (int64_t m = 0; m < M; ++m) {
    const Box b = face_box(XY + 6 * ids[m], pad, W, H);
    if (b.x1 < b.x0 || b.y1 < b.y0 || rect(bandsum, b.x0, b.x1, b.y0, b.y1) == 0) continue;
    near.emplace_back(ids[m], b);
    total += (b.x1 - b.x0 + 1) * (b.y1 - b.y0 + 1);
  }
  count_t[0] = total;
  if (total > max_pairs) return {face_t, inside_t, count_t};
  // keys after every depth: far + 1 - (signed distance), as float32 (raster.py)
  const float c = static_cast<float>((static_cast<double>(kmax) + 1.0) + 1.0);
  for (const auto& [f, b] : near) {
    const float* t = XY + 6 * f;
    for (int64_t y = b.y0; y <= b.y1; ++y) {
      const float py = static_cast<float>(y) + 0.5f;
      for (int64_t x = b.x0; x <= b.x1; ++x) {
        const int64_t pix = y * W + x;
        if (!band[pix]) continue;
        const float k = c - (-edge_distance(t, static_cast<float>(x) + 0.5f, py));
        if (k < key[pix]) {
          key[pix] = k;
          face[pix] = f;
        }
      }
    }
  }
  return {face_t, inside_t, count_t};
}
