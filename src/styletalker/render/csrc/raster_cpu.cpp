// Tile-based CPU rasterizer for 3D Gaussian splatting (forward + hand-written backwards).
//
// Entry points (see render/cpu.py for the autograd wiring):
//   project_forward/backward: means, quats, scales -> pixel centre xy, conic (a, b, c) = inverse
//     2D covariance, depth, valid (the math of render/common.py project()) and its gradient;
//   sort_by_depth: stable radix sort of the valid Gaussians by depth (front to back);
//   forward/backward: rasterize the projected Gaussians (opacity, F feature channels = colours +
//     depth) in that order -> (H,W,F) accumulated features and final transmittance, and back.
//
// Conventions: identical to styletalker/render/common.py and dense.py:
//   power  = -0.5 (a dx^2 + c dy^2) - b dx dy,  d = pixel centre (u+0.5, v+0.5) - xy
//   alpha  = min(ALPHA_MAX, opacity * exp(power)); skipped if power > 0 or alpha < ALPHA_MIN
//   front-to-back; a pixel stops at the first contribution whose T*(1-alpha) <= T_MIN (that
//   contribution is not composited); out = sum alpha_i T_i f_i, T_final = prod (1-alpha_i).
// A Gaussian is binned into a tile only if the tile can contain a pixel with
// opacity*exp(power) >= ALPHA_MIN (exact ellipse / rectangle test, with a tiny safety margin),
// so the result equals the dense reference (which has no cut-off) up to float rounding.
//
// Backward: per tile, Gaussians are replayed back to front (3DGS-style, T recovered by division),
// SIMD over the pixels of the tile row, summed per (tile, Gaussian) into a per-intersection
// buffer (no races) and reduced per Gaussian afterwards (deterministic).
//
// Parallelism: a small persistent thread pool (blocking waits, no spinning: robust on a busy
// machine), dynamic scheduling over tiles / chunks, thread count = at::get_num_threads().

#include <torch/extension.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

constexpr int TILE = 16;
constexpr int NPIX = TILE * TILE;
constexpr int NPRM = 6;  // x, y, a, b, c, opacity
constexpr double ALPHA_MIN = 1.0 / 255.0;
constexpr double ALPHA_MAX = 0.99;
constexpr double T_MIN = 1e-4;

struct Prof {  // STYLETALKER_RASTER_PROFILE=1 prints phase timings (wall; =cpu: this thread's CPU time)
  const char* env = std::getenv("STYLETALKER_RASTER_PROFILE");
  bool on = env != nullptr;
  bool cpu = env != nullptr && std::strcmp(env, "cpu") == 0;
  double t = now();
  double now() const {
    timespec ts;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  }
  void lap(const char* what) {
    if (!on) return;
    double n = now();
    std::fprintf(stderr, "[raster] %-12s %8.2f ms\n", what, n - t);
    t = n;
  }
};

inline int num_threads() {
  return std::max(1, at::get_num_threads());
}

// ---- thread pool ----------------------------------------------------------------------------
// run(n, body) runs `body` on the caller and up to n-1 pool workers. `body` claims work items
// itself (atomic counter) and returns when none are left, so the caller never waits for a worker
// that has not started yet (it only waits for workers that are finishing an item). Workers block
// on a condition variable between jobs. A forked child gets a fresh pool.
class ThreadPool {
 public:
  using Body = std::function<void()>;

  static ThreadPool& instance() {
    static std::mutex m;
    static ThreadPool* pool = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> g(m);
    if (pool == nullptr || owner != getpid()) {  // (the parent's pool is leaked in a fork child)
      pool = new ThreadPool();
      owner = getpid();
    }
    return *pool;
  }

  void run(int n, const Body& body) {
    if (n <= 1) return body();
    std::unique_lock<std::mutex> rl(run_mu_, std::try_to_lock);
    if (!rl.owns_lock()) return body();  // pool busy with another caller thread: run inline
    Job job;
    job.body = &body;
    job.max_workers = n - 1;
    {
      std::lock_guard<std::mutex> g(mu_);
      while (int(workers_.size()) < n - 1) workers_.emplace_back([this] { loop(); });
      job_ = &job;
      ++gen_;
    }
    cv_.notify_all();
    std::exception_ptr err;
    try {
      body();
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::unique_lock<std::mutex> g(mu_);
      job.open = false;
      done_cv_.wait(g, [&] { return job.finished == job.started; });
      job_ = nullptr;
      if (!err) err = job.error;
    }
    if (err) std::rethrow_exception(err);
  }

 private:
  struct Job {
    const Body* body = nullptr;
    int max_workers = 0, started = 0, finished = 0;
    bool open = true;
    std::exception_ptr error;
  };

  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> g(mu_);
    for (;;) {
      cv_.wait(g, [&] { return gen_ != seen; });
      seen = gen_;
      Job* job = job_;
      if (job == nullptr || !job->open || job->started >= job->max_workers) continue;
      job->started++;
      g.unlock();
      std::exception_ptr err;
      try {
        (*job->body)();
      } catch (...) {
        err = std::current_exception();
      }
      g.lock();
      if (err && !job->error) job->error = err;
      job->finished++;
      done_cv_.notify_all();
    }
  }

  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;
  uint64_t gen_ = 0;
};

// Dynamic parallel loop over [0, n) in chunks of `grain`, on up to `threads` threads:
// fn(begin, end).
template <typename Fn>
void parallel_range(int64_t n, int64_t grain, int threads, const Fn& fn) {
  if (n <= 0) return;
  const int64_t n_chunks = (n + grain - 1) / grain;
  threads = int(std::min<int64_t>(threads, n_chunks));
  if (threads <= 1) return fn(int64_t(0), n);
  std::atomic<int64_t> next{0};
  ThreadPool::instance().run(threads, [&] {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;)
      fn(c * grain, std::min(n, (c + 1) * grain));
  });
}

// Dynamic parallel loop with per-thread state: body(claim), where claim() returns the next item
// in [0, n) or -1.
template <typename Body>
void parallel_items(int64_t n, int threads, const Body& body) {
  std::atomic<int64_t> next{0};
  auto claim = [&]() -> int64_t {
    const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
    return i < n ? i : -1;
  };
  threads = int(std::min<int64_t>(threads, std::max<int64_t>(n, 1)));
  if (threads <= 1) return body(claim);
  ThreadPool::instance().run(threads, [&] { body(claim); });
}
// Threads for a parallel loop of `work` units: small jobs run serially (waking the OpenMP team
// costs more than it saves there, especially on a busy machine).
inline int threads_for(int64_t work, int64_t per_thread_min) {
  const int64_t t = std::min<int64_t>(num_threads(), std::max<int64_t>(1, work / per_thread_min));
  return int(t);
}

// ---- binning --------------------------------------------------------------------------------

struct Binning {
  int64_t M = 0;                 // number of valid Gaussians (sorted front to back)
  int tiles_x = 0, tiles_y = 0;  // tile grid
  std::vector<int32_t> bbox;     // (M,4): px0, px1, py0, py1 inclusive pixel range, px0>px1 if empty
  std::vector<int64_t> kstart;   // (M+1) start of the slots of Gaussian k's (tile) pairs
  std::vector<int32_t> kcount;   // (M) number of tiles Gaussian k is binned into (<= its slots)
  std::vector<int32_t> tile_off; // (tiles+1) start of tile t's list
  std::vector<int32_t> isect_k;  // (P) Gaussian (sorted index k) of each tile-list entry
  std::vector<int32_t> isect_slot; // (P) pair slot (k-grouped) of each tile-list entry
};

// min over the rectangle [X0,X1]x[Y0,Y1] of q(X,Y) = a X^2 + 2 b X Y + c Y^2 (a, c > 0, ac > b^2);
// boa = b/a, boc = b/c.
template <typename T>
inline T rect_min_q(T a, T b, T c, T boa, T boc, T X0, T X1, T Y0, T Y1) {
  if (X0 <= 0 && 0 <= X1 && Y0 <= 0 && 0 <= Y1) return 0;
  auto q = [&](T X, T Y) { return a * X * X + 2 * b * X * Y + c * Y * Y; };
  auto clampv = [](T v, T lo, T hi) { return v < lo ? lo : (v > hi ? hi : v); };
  T best = q(X0, clampv(-boc * X0, Y0, Y1));
  best = std::min(best, q(X1, clampv(-boc * X1, Y0, Y1)));
  best = std::min(best, q(clampv(-boa * Y0, X0, X1), Y0));
  best = std::min(best, q(clampv(-boa * Y1, X0, X1), Y1));
  return best;
}

// Gathers the sorted Gaussians' parameters into prm (M,6) and feats (M,F) and bins them.
template <typename T>
void bin_gaussians(const T* xy, const T* conic, const T* opac, const T* feats, const int64_t* order,
                   int64_t M, int F, int H, int W, std::vector<T>& prm, std::vector<T>& fk, std::vector<T>& thr,
                   Binning& B) {
  B.M = M;
  B.tiles_x = (W + TILE - 1) / TILE;
  B.tiles_y = (H + TILE - 1) / TILE;
  const int n_tiles = B.tiles_x * B.tiles_y;
  prm.resize(M * NPRM);
  fk.resize(M * F);
  thr.assign(M, T(0));
  std::vector<double> aux(M * 3);  // r2, b/a, b/c (tile test)
  B.bbox.resize(M * 4);
  B.kstart.assign(M + 1, 0);
  B.kcount.assign(M, 0);
  const int nt = threads_for(M, 2048);
  Prof prof;

  parallel_range(M, 1024, nt, [&](int64_t kb, int64_t ke) {
  for (int64_t k = kb; k < ke; ++k) {
    const int64_t g = order[k];
    const T x = xy[2 * g], y = xy[2 * g + 1];
    const T a = conic[3 * g], b = conic[3 * g + 1], c = conic[3 * g + 2];
    const T op = opac[g];
    T* p = &prm[k * NPRM];
    p[0] = x; p[1] = y; p[2] = a; p[3] = b; p[4] = c; p[5] = op;
    for (int ch = 0; ch < F; ++ch) fk[k * F + ch] = feats[g * F + ch];
    int32_t* bb = &B.bbox[k * 4];
    bb[0] = 0; bb[1] = -1; bb[2] = 0; bb[3] = -1;
    B.kstart[k + 1] = 0;
    const double det = double(a) * double(c) - double(b) * double(b);
    const double o255 = double(op) * 255.0;
    if (!(o255 >= 1.0) || !(det > 0) || !(a > 0) || !std::isfinite(double(x)) || !std::isfinite(double(y)) ||
        !std::isfinite(det))
      continue;
    // alpha >= 1/255  <=>  op*exp(-q/2) >= 1/255  <=>  q <= 2 ln(255 op); small safety margin
    const double r2 = 2.0 * std::log(o255) * (1.0 + 1e-4) + 1e-3;
    const double ex = std::sqrt(r2 * double(c) / det), ey = std::sqrt(r2 * double(a) / det);
    const double fx0 = std::ceil(double(x) - ex - 0.5), fx1 = std::floor(double(x) + ex - 0.5);
    const double fy0 = std::ceil(double(y) - ey - 0.5), fy1 = std::floor(double(y) + ey - 0.5);
    if (fx1 < 0 || fy1 < 0 || fx0 > W - 1 || fy0 > H - 1 || fx0 > fx1 || fy0 > fy1) continue;
    bb[0] = int32_t(std::max(0.0, fx0));
    bb[1] = int32_t(std::min(double(W - 1), fx1));
    bb[2] = int32_t(std::max(0.0, fy0));
    bb[3] = int32_t(std::min(double(H - 1), fy1));
    aux[3 * k] = r2;
    // lanes with power < thr have op*exp(power) < ALPHA_MIN (margin >> rounding): chunks skip on it
    thr[k] = T(-std::log(o255) - 1e-3);
    aux[3 * k + 1] = double(b) / double(a);
    aux[3 * k + 2] = double(b) / double(c);
    B.kstart[k + 1] = int64_t(bb[1] / TILE - bb[0] / TILE + 1) * (bb[3] / TILE - bb[2] / TILE + 1);
  }
  });
  prof.lap("bin bbox");
  for (int64_t k = 0; k < M; ++k) B.kstart[k + 1] += B.kstart[k];
  const int64_t S = B.kstart[M];
  TORCH_CHECK(S < std::numeric_limits<int32_t>::max(), "too many Gaussian/tile intersections");
  std::vector<int32_t> pair_tile(S);
  parallel_range(M, 1024, nt, [&](int64_t kb, int64_t ke) {
  for (int64_t k = kb; k < ke; ++k) {
    const int64_t o0 = B.kstart[k];
    if (B.kstart[k + 1] == o0) continue;
    const int32_t* bb = &B.bbox[k * 4];
    const int tx0 = bb[0] / TILE, tx1 = bb[1] / TILE, ty0 = bb[2] / TILE, ty1 = bb[3] / TILE;
    int64_t o = o0;
    if (tx0 == tx1 && ty0 == ty1) {  // the box lies in one tile: no test needed (binning is conservative)
      pair_tile[o++] = ty0 * B.tiles_x + tx0;
    } else {
      const double* ax = &aux[3 * k];
      const T* p = &prm[k * NPRM];
      const double x = p[0], y = p[1], a = p[2], b = p[3], c = p[4];
      for (int ty = ty0; ty <= ty1; ++ty) {
        const int y0 = std::max(ty * TILE, bb[2]), y1 = std::min(ty * TILE + TILE - 1, bb[3]);
        const double Y0 = y0 + 0.5 - y, Y1 = y1 + 0.5 - y;
        for (int tx = tx0; tx <= tx1; ++tx) {
          const int x0 = std::max(tx * TILE, bb[0]), x1 = std::min(tx * TILE + TILE - 1, bb[1]);
          const double X0 = x0 + 0.5 - x, X1 = x1 + 0.5 - x;
          if (rect_min_q<double>(a, b, c, ax[1], ax[2], X0, X1, Y0, Y1) <= ax[0]) pair_tile[o++] = ty * B.tiles_x + tx;
        }
      }
    }
    B.kcount[k] = int32_t(o - o0);
  }
  });
  prof.lap("bin tiles");
  // stable counting sort of the pairs by tile: lists stay in front-to-back order
  B.tile_off.assign(n_tiles + 1, 0);
  for (int64_t k = 0; k < M; ++k)
    for (int64_t p = B.kstart[k], e = p + B.kcount[k]; p < e; ++p) B.tile_off[pair_tile[p] + 1]++;
  for (int t = 0; t < n_tiles; ++t) B.tile_off[t + 1] += B.tile_off[t];
  std::vector<int32_t> cursor(B.tile_off.begin(), B.tile_off.end() - 1);
  B.isect_k.resize(B.tile_off[n_tiles]);
  B.isect_slot.resize(B.tile_off[n_tiles]);
  for (int64_t k = 0; k < M; ++k)
    for (int64_t p = B.kstart[k], e = p + B.kcount[k]; p < e; ++p) {
      const int32_t pos = cursor[pair_tile[p]]++;
      B.isect_slot[pos] = int32_t(p);
      B.isect_k[pos] = int32_t(k);
    }
  prof.lap("bin sort");
}

// Same pixel rectangle of Gaussian k inside tile (tx0, ty0).
inline bool tile_rect(const int32_t* bb, int tx0, int ty0, int& x0, int& x1, int& y0, int& y1) {
  x0 = std::max(tx0, bb[0]);
  x1 = std::min(tx0 + TILE - 1, bb[1]);
  y0 = std::max(ty0, bb[2]);
  y1 = std::min(ty0 + TILE - 1, bb[3]);
  return x0 <= x1 && y0 <= y1;
}

// ---- SIMD helpers (GCC/Clang vector extensions; 8 lanes for float and double) -----------------
// A tile row of 16 pixels is processed as two 8-lane chunks; only chunks overlapping the
// Gaussian's pixel bounding box are visited. Lanes outside the box have alpha < ALPHA_MIN anyway
// (the box is conservative), so the alpha test itself masks them.

constexpr int LANES = 8;

template <typename T>
struct VT;
template <>
struct VT<float> {
  typedef float V __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
  typedef int32_t IT;
};
template <>
struct VT<double> {
  typedef double V __attribute__((vector_size(64)));
  typedef int64_t I __attribute__((vector_size(64)));
  typedef int64_t IT;
};

template <typename V, typename S>
inline V vload(const S* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename S>
inline void vstore(S* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}
template <typename V, typename S>
inline V splat(S s) {
  return V{} + s;
}

// exp for 8 floats: Cephes-style range reduction + degree-6 polynomial (<= ~2 ulp), plain vector
// arithmetic (round-to-nearest via the 1.5*2^23 trick); float64 uses libm per lane (test path).
inline VT<float>::V vexp(VT<float>::V x) {
  typedef VT<float>::V V;
  typedef VT<float>::I I;
  x = x < splat<V>(-87.0f) ? splat<V>(-87.0f) : x;
  x = x > splat<V>(88.0f) ? splat<V>(88.0f) : x;
  V fx = x * 1.44269504088896341f;
  V n = (fx + 12582912.0f) - 12582912.0f;
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = splat<V>(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  I e = (__builtin_convertvector(n, I) + 127) << 23;
  V s;
  std::memcpy(&s, &e, sizeof(V));
  return p * s;
}
inline VT<double>::V vexp(VT<double>::V x) {  // float64 path (tests): libm per lane
  VT<double>::V out;
  for (int i = 0; i < LANES; ++i) out[i] = std::exp(x[i]);
  return out;
}

template <typename I>
inline bool any_lane(const I& m) {
#if defined(__AVX2__)
  if constexpr (sizeof(I) == 32) {
    __m256i v;
    std::memcpy(&v, &m, 32);
    return !_mm256_testz_si256(v, v);
  }
#endif
  for (int i = 0; i < LANES; ++i)
    if (m[i]) return true;
  return false;
}

template <typename T>
inline typename VT<T>::V lane_iota() {
  typename VT<T>::V v;
  for (int i = 0; i < LANES; ++i) v[i] = T(i);
  return v;
}

// ---- forward --------------------------------------------------------------------------------

template <typename T, int FC>
void forward_tiles(const Binning& B, const T* prm, const T* fk, const T* thr, int F_rt, int H, int W, T* out, T* Tout,
                   int32_t* last_out) {
  typedef typename VT<T>::V V;
  typedef typename VT<T>::I I;
  typedef typename VT<T>::IT IT;
  const int F = FC > 0 ? FC : F_rt;
  const int n_tiles = B.tiles_x * B.tiles_y;
  const V amin = splat<V>(T(ALPHA_MIN)), amax = splat<V>(T(ALPHA_MAX)), tmin = splat<V>(T(T_MIN));
  const V zero = splat<V>(T(0)), one = splat<V>(T(1)), m80 = splat<V>(T(-80));
  const V iota = lane_iota<T>();
  parallel_items(n_tiles, threads_for(int64_t(B.isect_k.size()) + n_tiles, 1024), [&](const auto& claim) {
    std::vector<T> accv(size_t(F) * NPIX);
    T* acc = accv.data();
    alignas(64) T Tp[NPIX];
    alignas(64) IT done[NPIX];
    alignas(64) IT last[NPIX];
    for (int64_t tt; (tt = claim()) >= 0;) {
      const int t = int(tt);
      const int tx0 = (t % B.tiles_x) * TILE, ty0 = (t / B.tiles_x) * TILE;
      const int tw = std::min(TILE, W - tx0), th = std::min(TILE, H - ty0);
      std::fill(accv.begin(), accv.end(), T(0));
      for (int i = 0; i < NPIX; ++i) {
        Tp[i] = T(1);
        done[i] = ((i % TILE) < tw && (i / TILE) < th) ? 0 : -1;  // lanes outside the image never draw
        last[i] = 0;
      }
      int n_active = tw * th;
      constexpr int NCH = NPIX / LANES;
      bool cdone[NCH];  // every lane of chunk finished (or outside the image)
      for (int q = 0; q < NCH; ++q) cdone[q] = !any_lane<I>(vload<I>(done + q * LANES) == 0);
      const int j0 = B.tile_off[t], j1 = B.tile_off[t + 1];
      for (int j = j0; j < j1 && n_active > 0; ++j) {
        const int64_t k = B.isect_k[j];
        int x0, x1, y0, y1;
        if (!tile_rect(&B.bbox[k * 4], tx0, ty0, x0, x1, y0, y1)) continue;
        const T* p = prm + k * NPRM;
        const T gx = p[0], gy = p[1], a = p[2], b = p[3], c = p[4], op = p[5];
        const T* f = fk + k * F;
        const I jl = splat<I>(IT(j - j0 + 1));
        const V thr_v = splat<V>(thr[k]);
        const int c0 = (x0 - tx0) / LANES, c1 = (x1 - tx0) / LANES;
        I stops = splat<I>(IT(0));
        for (int py = y0; py <= y1; ++py) {
          const T dy = T(py) + T(0.5) - gy;
          const T cdy = T(-0.5) * c * dy * dy;
          const T bdy = b * dy;
          for (int ch = c0; ch <= c1; ++ch) {
            const int base = (py - ty0) * TILE + ch * LANES;
            if (cdone[base / LANES]) continue;
            const V dx = iota + (T(tx0 + ch * LANES) + T(0.5) - gx);
            const V power = (T(-0.5) * a * dx * dx + cdy) - bdy * dx;
            I d = vload<I>(done + base);
            if (!any_lane<I>((power >= thr_v) & (d == 0))) continue;  // nothing visible / all done
            const V g = vexp(power < m80 ? m80 : power);
            V alpha = op * g;
            alpha = alpha > amax ? amax : alpha;
            const I ok = (power <= zero) & (alpha >= amin) & (d == 0);
            const V Tc = vload<V>(Tp + base);
            const V testT = Tc * (one - alpha);
            const I gt = testT > tmin;
            const I contrib = ok & gt;
            const I stop = ok & ~gt;
            const V w = contrib ? alpha * Tc : zero;
            for (int q = 0; q < F; ++q) {
              T* ar = acc + size_t(q) * NPIX + base;
              vstore(ar, vload<V>(ar) + w * f[q]);
            }
            vstore(Tp + base, contrib ? testT : Tc);
            d |= stop;
            vstore(done + base, d);
            if (any_lane<I>(stop)) cdone[base / LANES] = !any_lane<I>(d == 0);
            vstore(last + base, contrib ? jl : vload<I>(last + base));
            stops -= stop;
          }
        }
        for (int i = 0; i < LANES; ++i) n_active -= int(stops[i]);
      }
      for (int yy = 0; yy < th; ++yy)
        for (int xx = 0; xx < tw; ++xx) {
          const int i = yy * TILE + xx;
          const int64_t pix = int64_t(ty0 + yy) * W + (tx0 + xx);
          for (int q = 0; q < F; ++q) out[pix * F + q] = acc[size_t(q) * NPIX + i];
          Tout[pix] = Tp[i];
          last_out[pix] = int32_t(last[i]);
        }
    }
  });
}

// ---- backward -------------------------------------------------------------------------------

template <typename T, int FC>
void backward_tiles(const Binning& B, const T* prm, const T* fk, const T* thr, int F_rt, int H, int W, const T* Tfin,
                    const int32_t* last_in, const T* g_out, const T* g_T, T* gslot /* (slots, 6+F) */) {
  typedef typename VT<T>::V V;
  typedef typename VT<T>::I I;
  typedef typename VT<T>::IT IT;
  const int F = FC > 0 ? FC : F_rt;
  const int G = NPRM + F;
  const int n_tiles = B.tiles_x * B.tiles_y;
  const V amin = splat<V>(T(ALPHA_MIN)), amax = splat<V>(T(ALPHA_MAX));
  const V zero = splat<V>(T(0)), one = splat<V>(T(1)), m80 = splat<V>(T(-80));
  const V iota = lane_iota<T>();
  parallel_items(n_tiles, threads_for(int64_t(B.isect_k.size()) + n_tiles, 1024), [&](const auto& claim) {
    std::vector<T> gaccv(size_t(F) * NPIX);
    T* gacc = gaccv.data();
    std::vector<V> gfl(F);
    alignas(64) T Tp[NPIX];
    alignas(64) T S[NPIX];
    alignas(64) T gTT[NPIX];  // dL/dT_final * T_final
    alignas(64) IT last[NPIX];
    for (int64_t tt; (tt = claim()) >= 0;) {
      const int t = int(tt);
      const int tx0 = (t % B.tiles_x) * TILE, ty0 = (t / B.tiles_x) * TILE;
      const int tw = std::min(TILE, W - tx0), th = std::min(TILE, H - ty0);
      const int j0 = B.tile_off[t];
      int jmax = 0;
      for (int i = 0; i < NPIX; ++i) {
        Tp[i] = T(1);
        S[i] = T(0);
        gTT[i] = T(0);
        last[i] = 0;
      }
      std::fill(gaccv.begin(), gaccv.end(), T(0));
      for (int yy = 0; yy < th; ++yy)
        for (int xx = 0; xx < tw; ++xx) {
          const int i = yy * TILE + xx;
          const int64_t pix = int64_t(ty0 + yy) * W + (tx0 + xx);
          Tp[i] = Tfin[pix];
          gTT[i] = g_T[pix] * Tfin[pix];
          last[i] = last_in[pix];
          jmax = std::max(jmax, int(last_in[pix]));
          for (int q = 0; q < F; ++q) gacc[size_t(q) * NPIX + i] = g_out[pix * F + q];
        }
      constexpr int NCH = NPIX / LANES;
      int cmax[NCH];  // largest `last` of the chunk's pixels: Gaussians at jl >= cmax never touch it
      for (int q = 0; q < NCH; ++q) {
        cmax[q] = 0;
        for (int i = 0; i < LANES; ++i) cmax[q] = std::max(cmax[q], int(last[q * LANES + i]));
      }
      for (int jl = jmax - 1; jl >= 0; --jl) {
        const int j = j0 + jl;
        const int64_t k = B.isect_k[j];
        T* gi = gslot + int64_t(B.isect_slot[j]) * G;
        int x0, x1, y0, y1;
        if (!tile_rect(&B.bbox[k * 4], tx0, ty0, x0, x1, y0, y1)) {
          for (int q = 0; q < G; ++q) gi[q] = T(0);
          continue;
        }
        const T* p = prm + k * NPRM;
        const T gx = p[0], gy = p[1], a = p[2], b = p[3], c = p[4], op = p[5];
        const T* f = fk + k * F;
        const I jlv = splat<I>(IT(jl));
        const V thr_v = splat<V>(thr[k]);
        V s0 = zero, s1 = zero, s2 = zero, s3 = zero, s4 = zero, s5 = zero;
        for (int q = 0; q < F; ++q) gfl[q] = zero;
        const int c0 = (x0 - tx0) / LANES, c1 = (x1 - tx0) / LANES;
        for (int py = y0; py <= y1; ++py) {
          const T dy = T(py) + T(0.5) - gy;
          const T cdy = T(-0.5) * c * dy * dy;
          const T bdy = b * dy;
          const T cdy1 = c * dy;
          const T hdy2 = T(-0.5) * dy * dy;
          for (int ch = c0; ch <= c1; ++ch) {
            const int base = (py - ty0) * TILE + ch * LANES;
            if (jl >= cmax[base / LANES]) continue;
            const V dx = iota + (T(tx0 + ch * LANES) + T(0.5) - gx);
            const V power = (T(-0.5) * a * dx * dx + cdy) - bdy * dx;
            const I act = jlv < vload<I>(last + base);
            if (!any_lane<I>((power >= thr_v) & act)) continue;  // no pixel of the chunk used it
            const V g = vexp(power < m80 ? m80 : power);
            const V og = op * g;
            const V alpha = og > amax ? amax : og;
            const I ok = (power <= zero) & (alpha >= amin) & act;
            const V inv = one / (one - alpha);
            const V Tcur = vload<V>(Tp + base);
            const V Ti = Tcur * inv;
            const V w = ok ? alpha * Ti : zero;
            V dot = zero;
            for (int q = 0; q < F; ++q) dot += vload<V>(gacc + size_t(q) * NPIX + base) * f[q];
            const V Sc = vload<V>(S + base);
            const V dLda = Ti * dot - (Sc + vload<V>(gTT + base)) * inv;
            const I unclamped = ok & (og < amax);
            s5 += unclamped ? dLda * g : zero;
            const V dpow = unclamped ? dLda * alpha : zero;
            s0 += dpow * (a * dx + bdy);
            s1 += dpow * (b * dx + cdy1);
            s2 += dpow * (T(-0.5) * dx * dx);
            s3 += dpow * (-dx * dy);
            s4 += dpow * hdy2;
            for (int q = 0; q < F; ++q) gfl[q] += w * vload<V>(gacc + size_t(q) * NPIX + base);
            vstore(S + base, Sc + w * dot);
            vstore(Tp + base, ok ? Ti : Tcur);
          }
        }
        T r[NPRM] = {0, 0, 0, 0, 0, 0};
        for (int i = 0; i < LANES; ++i) {
          r[0] += s0[i]; r[1] += s1[i]; r[2] += s2[i]; r[3] += s3[i]; r[4] += s4[i]; r[5] += s5[i];
        }
        for (int q = 0; q < NPRM; ++q) gi[q] = r[q];
        for (int q = 0; q < F; ++q) {
          T s = 0;
          for (int i = 0; i < LANES; ++i) s += gfl[q][i];
          gi[NPRM + q] = s;
        }
      }
      // entries past jmax were never reached by any pixel of this tile
      for (int j = j0 + jmax; j < B.tile_off[t + 1]; ++j)
        for (int q = 0; q < G; ++q) gslot[int64_t(B.isect_slot[j]) * G + q] = T(0);
    }
  });
}

// ---- projection (EWA splatting), same math as common.project() --------------------------------
// inputs: means (N,3), quats (N,4) wxyz (any norm), scales (N,3) linear, cam = [R(9), t(3), fx, fy,
// cx, cy, width, height, near, far] (20 values, row-major R of world_to_cam).
// outputs: xy (N,2), conic (N,3), depth (N,), valid (N,) uint8.

template <typename T>
struct Cam {
  T R[9], t[3], fx, fy, cx, cy, W, H, near, far;
  T lox, hix, loy, hiy;
  explicit Cam(const T* c) {
    for (int i = 0; i < 9; ++i) R[i] = c[i];
    for (int i = 0; i < 3; ++i) t[i] = c[9 + i];
    fx = c[12]; fy = c[13]; cx = c[14]; cy = c[15]; W = c[16]; H = c[17]; near = c[18]; far = c[19];
    const T tanx = T(0.5) * W / fx, tany = T(0.5) * H / fy;
    lox = -(cx / fx + T(0.3) * tanx);
    hix = (W - cx) / fx + T(0.3) * tanx;
    loy = -(cy / fy + T(0.3) * tany);
    hiy = (H - cy) / fy + T(0.3) * tany;
  }
};

template <typename T>
inline void quat_rot(const T* q, T* R, T* qn_out, T& norm) {
  T n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  n = n < T(1e-12) ? T(1e-12) : n;
  const T w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
  R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z);     R[2] = 2 * (x * z + w * y);
  R[3] = 2 * (x * y + w * z);     R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
  R[6] = 2 * (x * z - w * y);     R[7] = 2 * (y * z + w * x);     R[8] = 1 - 2 * (x * x + y * y);
  qn_out[0] = w; qn_out[1] = x; qn_out[2] = y; qn_out[3] = z;
  norm = n;
}

// Everything the forward computes for one Gaussian (recomputed in the backward).
template <typename T>
struct ProjState {
  T pc[3], z, x, y, xc, yc;
  bool valid, clx, cly;  // clx: x inside clamp range (gradient passes)
  T Rq[9], qn[4], qnorm, M[9], J[6], T2[6], V[6], cov[3], det_raw, det;
};

template <typename T>
inline void project_one(const Cam<T>& cam, const T* m, const T* q, const T* s, ProjState<T>& st) {
  for (int r = 0; r < 3; ++r)
    st.pc[r] = cam.R[3 * r] * m[0] + cam.R[3 * r + 1] * m[1] + cam.R[3 * r + 2] * m[2] + cam.t[r];
  st.z = st.pc[2];
  st.valid = (st.z > cam.near) && (st.z < cam.far);
  const T zs = st.valid ? st.z : T(1);
  st.x = st.pc[0] / zs;
  st.y = st.pc[1] / zs;
  st.clx = (st.x >= cam.lox) && (st.x <= cam.hix);
  st.cly = (st.y >= cam.loy) && (st.y <= cam.hiy);
  st.xc = std::min(std::max(st.x, cam.lox), cam.hix);
  st.yc = std::min(std::max(st.y, cam.loy), cam.hiy);
  st.J[0] = cam.fx / zs; st.J[1] = 0; st.J[2] = -cam.fx * st.xc / zs;
  st.J[3] = 0; st.J[4] = cam.fy / zs; st.J[5] = -cam.fy * st.yc / zs;
  quat_rot(q, st.Rq, st.qn, st.qnorm);
  for (int r = 0; r < 3; ++r)
    for (int cc = 0; cc < 3; ++cc) st.M[3 * r + cc] = st.Rq[3 * r + cc] * s[cc];
  // T2 = J Rw (2x3), V = T2 M (2x3)
  for (int r = 0; r < 2; ++r)
    for (int cc = 0; cc < 3; ++cc)
      st.T2[3 * r + cc] = st.J[3 * r] * cam.R[cc] + st.J[3 * r + 1] * cam.R[3 + cc] + st.J[3 * r + 2] * cam.R[6 + cc];
  for (int r = 0; r < 2; ++r)
    for (int cc = 0; cc < 3; ++cc)
      st.V[3 * r + cc] = st.T2[3 * r] * st.M[cc] + st.T2[3 * r + 1] * st.M[3 + cc] + st.T2[3 * r + 2] * st.M[6 + cc];
  const T* V = st.V;
  st.cov[0] = V[0] * V[0] + V[1] * V[1] + V[2] * V[2] + T(0.3);
  st.cov[1] = V[0] * V[3] + V[1] * V[4] + V[2] * V[5];
  st.cov[2] = V[3] * V[3] + V[4] * V[4] + V[5] * V[5] + T(0.3);
  st.det_raw = st.cov[0] * st.cov[2] - st.cov[1] * st.cov[1];
  st.det = st.det_raw < T(1e-12) ? T(1e-12) : st.det_raw;
}

template <typename T>
void project_forward_impl(const T* means, const T* quats, const T* scales, const T* camv, int64_t N, T* xy,
                          T* conic, T* depth, uint8_t* valid) {
  const Cam<T> cam(camv);
  parallel_range(N, 2048, threads_for(N, 4096), [&](int64_t ib, int64_t ie) {
  for (int64_t i = ib; i < ie; ++i) {
    ProjState<T> st;
    project_one(cam, means + 3 * i, quats + 4 * i, scales + 3 * i, st);
    xy[2 * i] = cam.fx * st.x + cam.cx;
    xy[2 * i + 1] = cam.fy * st.y + cam.cy;
    conic[3 * i] = st.cov[2] / st.det;
    conic[3 * i + 1] = -st.cov[1] / st.det;
    conic[3 * i + 2] = st.cov[0] / st.det;
    depth[i] = st.z;
    valid[i] = st.valid ? 1 : 0;
  }
  });
}

template <typename T>
void project_backward_impl(const T* means, const T* quats, const T* scales, const T* camv, int64_t N,
                           const T* gxy, const T* gconic, const T* gdepth, T* gm, T* gq, T* gs) {
  const Cam<T> cam(camv);
  parallel_range(N, 2048, threads_for(N, 4096), [&](int64_t ib, int64_t ie) {
  for (int64_t i = ib; i < ie; ++i) {
    if (gxy[2 * i] == 0 && gxy[2 * i + 1] == 0 && gconic[3 * i] == 0 && gconic[3 * i + 1] == 0 &&
        gconic[3 * i + 2] == 0 && gdepth[i] == 0) {  // culled / occluded: nothing to propagate
      for (int q = 0; q < 3; ++q) gm[3 * i + q] = gs[3 * i + q] = T(0);
      for (int q = 0; q < 4; ++q) gq[4 * i + q] = T(0);
      continue;
    }
    ProjState<T> st;
    project_one(cam, means + 3 * i, quats + 4 * i, scales + 3 * i, st);
    const T zs = st.valid ? st.z : T(1);
    // conic = (c, -b, a) / det
    const T gA = gconic[3 * i], gB = gconic[3 * i + 1], gC = gconic[3 * i + 2];
    const T a = st.cov[0], b = st.cov[1], c = st.cov[2], det = st.det;
    T ga = gC / det, gb = -gB / det, gc = gA / det;
    if (st.det_raw >= T(1e-12)) {
      const T gdet = -(gA * c - gB * b + gC * a) / (det * det);
      ga += gdet * c;
      gc += gdet * a;
      gb += gdet * (-2 * b);
    }
    // cov = V V^T (+0.3 I): dV = Gs V, Gs = [[2ga, gb], [gb, 2gc]]
    const T* V = st.V;
    T gV[6];
    for (int cc = 0; cc < 3; ++cc) {
      gV[cc] = 2 * ga * V[cc] + gb * V[3 + cc];
      gV[3 + cc] = gb * V[cc] + 2 * gc * V[3 + cc];
    }
    // V = T2 M: gM = T2^T gV (3x3), gT2 = gV M^T (2x3)
    T gM[9], gT2[6];
    for (int r = 0; r < 3; ++r)
      for (int cc = 0; cc < 3; ++cc) gM[3 * r + cc] = st.T2[r] * gV[cc] + st.T2[3 + r] * gV[3 + cc];
    for (int r = 0; r < 2; ++r)
      for (int cc = 0; cc < 3; ++cc)
        gT2[3 * r + cc] = gV[3 * r] * st.M[3 * cc] + gV[3 * r + 1] * st.M[3 * cc + 1] + gV[3 * r + 2] * st.M[3 * cc + 2];
    // M = Rq diag(s)
    const T* sc = scales + 3 * i;
    T gR[9];
    for (int r = 0; r < 3; ++r)
      for (int cc = 0; cc < 3; ++cc) gR[3 * r + cc] = gM[3 * r + cc] * sc[cc];
    for (int cc = 0; cc < 3; ++cc)
      gs[3 * i + cc] = gM[cc] * st.Rq[cc] + gM[3 + cc] * st.Rq[3 + cc] + gM[6 + cc] * st.Rq[6 + cc];
    {
      const T w = st.qn[0], x = st.qn[1], y = st.qn[2], z = st.qn[3];
      const T dw = 2 * (-z * gR[1] + y * gR[2] + z * gR[3] - x * gR[5] - y * gR[6] + x * gR[7]);
      const T dx = 2 * (y * gR[1] + z * gR[2] + y * gR[3] - 2 * x * gR[4] - w * gR[5] + z * gR[6] + w * gR[7] -
                        2 * x * gR[8]);
      const T dy = 2 * (-2 * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + z * gR[5] - w * gR[6] + z * gR[7] -
                        2 * y * gR[8]);
      const T dz = 2 * (-2 * z * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - 2 * z * gR[4] + y * gR[5] +
                        x * gR[6] + y * gR[7]);
      const T dotq = w * dw + x * dx + y * dy + z * dz;
      const T n = st.qnorm;
      const bool nclamp = std::sqrt(quats[4 * i] * quats[4 * i] + quats[4 * i + 1] * quats[4 * i + 1] +
                                    quats[4 * i + 2] * quats[4 * i + 2] + quats[4 * i + 3] * quats[4 * i + 3]) <
                          T(1e-12);
      if (nclamp) {  // q / 1e-12: no normalisation gradient
        gq[4 * i] = dw / n; gq[4 * i + 1] = dx / n; gq[4 * i + 2] = dy / n; gq[4 * i + 3] = dz / n;
      } else {
        gq[4 * i] = (dw - w * dotq) / n;
        gq[4 * i + 1] = (dx - x * dotq) / n;
        gq[4 * i + 2] = (dy - y * dotq) / n;
        gq[4 * i + 3] = (dz - z * dotq) / n;
      }
    }
    // T2 = J Rw: gJ = gT2 Rw^T
    T gJ[6];
    for (int r = 0; r < 2; ++r)
      for (int cc = 0; cc < 3; ++cc)
        gJ[3 * r + cc] = gT2[3 * r] * cam.R[3 * cc] + gT2[3 * r + 1] * cam.R[3 * cc + 1] + gT2[3 * r + 2] * cam.R[3 * cc + 2];
    // J = [[fx/zs, 0, -fx xc/zs], [0, fy/zs, -fy yc/zs]]
    T gz = 0, gxv = 0, gyv = 0;
    if (st.valid) {
      gz += gJ[0] * (-cam.fx / (zs * zs)) + gJ[2] * (cam.fx * st.xc / (zs * zs)) + gJ[4] * (-cam.fy / (zs * zs)) +
            gJ[5] * (cam.fy * st.yc / (zs * zs));
      gz += gdepth[i];
    }
    if (st.clx) gxv += gJ[2] * (-cam.fx / zs);
    if (st.cly) gyv += gJ[5] * (-cam.fy / zs);
    gxv += gxy[2 * i] * cam.fx;
    gyv += gxy[2 * i + 1] * cam.fy;
    // x = pcx / zs, y = pcy / zs
    T gpc[3] = {gxv / zs, gyv / zs, T(0)};
    if (st.valid) gz += -(gxv * st.pc[0] + gyv * st.pc[1]) / (zs * zs);
    gpc[2] = st.valid ? gz : gdepth[i];
    for (int cc = 0; cc < 3; ++cc)
      gm[3 * i + cc] = cam.R[cc] * gpc[0] + cam.R[3 + cc] * gpc[1] + cam.R[6 + cc] * gpc[2];
  }
  });
}

std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                           torch::Tensor cam) {
  TORCH_CHECK(means.is_contiguous() && quats.is_contiguous() && scales.is_contiguous() && cam.is_contiguous(),
              "project: tensors must be contiguous");
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3 && quats.size(1) == 4 && scales.size(1) == 3,
              "project: bad shapes");
  const int64_t N = means.size(0);
  auto o = means.options();
  auto xy = torch::empty({N, 2}, o), conic = torch::empty({N, 3}, o), depth = torch::empty({N}, o);
  auto valid = torch::empty({N}, o.dtype(torch::kBool));
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_forward", [&] {
    project_forward_impl<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
                                   cam.data_ptr<scalar_t>(), N, xy.data_ptr<scalar_t>(), conic.data_ptr<scalar_t>(),
                                   depth.data_ptr<scalar_t>(), reinterpret_cast<uint8_t*>(valid.data_ptr<bool>()));
  });
  return {xy, conic, depth, valid};
}

std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                            torch::Tensor cam, torch::Tensor gxy, torch::Tensor gconic,
                                            torch::Tensor gdepth) {
  const int64_t N = means.size(0);
  auto o = means.options();
  auto gm = torch::empty({N, 3}, o), gq = torch::empty({N, 4}, o), gs = torch::empty({N, 3}, o);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_backward", [&] {
    project_backward_impl<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                    scales.data_ptr<scalar_t>(), cam.data_ptr<scalar_t>(), N,
                                    gxy.data_ptr<scalar_t>(), gconic.data_ptr<scalar_t>(), gdepth.data_ptr<scalar_t>(),
                                    gm.data_ptr<scalar_t>(), gq.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>());
  });
  return {gm, gq, gs};
}

// ---- depth sort ------------------------------------------------------------------------------
// Indices of the valid Gaussians in ascending depth, ties by index (stable LSD radix sort).

template <typename T, typename U>
std::vector<int64_t> sort_by_depth_impl(const T* depth, const bool* valid, int64_t N) {
  std::vector<U> key;
  std::vector<int64_t> idx;
  key.reserve(N);
  idx.reserve(N);
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  for (int64_t i = 0; i < N; ++i) {
    if (!valid[i]) continue;
    T d = depth[i];
    if (d == T(0)) d = T(0);  // -0 == +0
    U b;
    std::memcpy(&b, &d, sizeof(U));
    key.push_back((b & sign) ? ~b : (b | sign));  // order-preserving float -> unsigned map
    idx.push_back(i);
  }
  const size_t M = key.size();
  std::vector<U> key2(M);
  std::vector<int64_t> idx2(M);
  for (int shift = 0; shift < int(8 * sizeof(U)); shift += 8) {
    size_t cnt[257] = {0};
    for (size_t i = 0; i < M; ++i) cnt[((key[i] >> shift) & 0xFF) + 1]++;
    if (cnt[((key.empty() ? 0 : (key[0] >> shift) & 0xFF)) + 1] == M) continue;  // digit constant
    for (int d = 0; d < 256; ++d) cnt[d + 1] += cnt[d];
    for (size_t i = 0; i < M; ++i) {
      const size_t o = cnt[(key[i] >> shift) & 0xFF]++;
      key2[o] = key[i];
      idx2[o] = idx[i];
    }
    key.swap(key2);
    idx.swap(idx2);
  }
  return idx;
}

torch::Tensor sort_by_depth(torch::Tensor depth, torch::Tensor valid) {
  TORCH_CHECK(depth.dim() == 1 && valid.dim() == 1 && depth.size(0) == valid.size(0), "sort_by_depth: bad shapes");
  TORCH_CHECK(depth.is_contiguous() && valid.is_contiguous() && valid.scalar_type() == torch::kBool,
              "sort_by_depth: need contiguous depth and bool valid");
  std::vector<int64_t> idx;
  if (depth.scalar_type() == torch::kFloat32)
    idx = sort_by_depth_impl<float, uint32_t>(depth.data_ptr<float>(), valid.data_ptr<bool>(), depth.size(0));
  else if (depth.scalar_type() == torch::kFloat64)
    idx = sort_by_depth_impl<double, uint64_t>(depth.data_ptr<double>(), valid.data_ptr<bool>(), depth.size(0));
  else
    TORCH_CHECK(false, "sort_by_depth: float32/float64 only");
  auto out = torch::empty({int64_t(idx.size())}, torch::kInt64);
  std::memcpy(out.data_ptr<int64_t>(), idx.data(), idx.size() * sizeof(int64_t));
  return out;
}

// ---- entry points ----------------------------------------------------------------------------

void check_inputs(const torch::Tensor& xy, const torch::Tensor& conic, const torch::Tensor& opac,
                  const torch::Tensor& feats, const torch::Tensor& order) {
  for (const auto* t : {&xy, &conic, &opac, &feats, &order}) {
    TORCH_CHECK(t->device().is_cpu(), "raster_cpu: tensors must be on the CPU");
    TORCH_CHECK(t->is_contiguous(), "raster_cpu: tensors must be contiguous");
  }
  const int64_t N = xy.size(0);
  TORCH_CHECK(xy.dim() == 2 && xy.size(1) == 2, "xy must be (N,2)");
  TORCH_CHECK(conic.dim() == 2 && conic.size(0) == N && conic.size(1) == 3, "conic must be (N,3)");
  TORCH_CHECK(opac.dim() == 1 && opac.size(0) == N, "opacity must be (N,)");
  TORCH_CHECK(feats.dim() == 2 && feats.size(0) == N, "feats must be (N,F)");
  TORCH_CHECK(order.dim() == 1 && order.scalar_type() == torch::kInt64, "order must be int64 (M,)");
  TORCH_CHECK(conic.scalar_type() == xy.scalar_type() && opac.scalar_type() == xy.scalar_type() &&
                  feats.scalar_type() == xy.scalar_type(),
              "raster_cpu: all float inputs must share one dtype");
}

// State kept from the forward for the backward (binning and gathered parameters).
struct RasterState {
  virtual ~RasterState() = default;
  int64_t N = 0;
  int F = 0, H = 0, W = 0;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> order;
  int64_t n_isect() const { return n_isect_; }
  int64_t n_isect_ = 0;
};
template <typename T>
struct RasterStateT : RasterState {
  Binning B;
  std::vector<T> prm, fk, thr;
};

template <typename T, int FC>
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, std::shared_ptr<RasterState>> forward_impl(
    const torch::Tensor& xy, const torch::Tensor& conic, const torch::Tensor& opac, const torch::Tensor& feats,
    const torch::Tensor& order, int H, int W) {
  const int F = int(feats.size(1));
  const int64_t M = order.size(0);
  Prof prof;
  auto st = std::make_shared<RasterStateT<T>>();
  st->N = xy.size(0);
  st->F = F;
  st->H = H;
  st->W = W;
  st->dtype = xy.scalar_type();
  st->order.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + M);
  bin_gaussians<T>(xy.data_ptr<T>(), conic.data_ptr<T>(), opac.data_ptr<T>(), feats.data_ptr<T>(),
                   st->order.data(), M, F, H, W, st->prm, st->fk, st->thr, st->B);
  st->n_isect_ = int64_t(st->B.isect_k.size());
  prof.lap("fwd bin");
  auto fopt = xy.options();
  auto out = torch::empty({H, W, F}, fopt);
  auto Tf = torch::empty({H, W}, fopt);
  auto last = torch::empty({H, W}, fopt.dtype(torch::kInt32));
  forward_tiles<T, FC>(st->B, st->prm.data(), st->fk.data(), st->thr.data(), F, H, W, out.data_ptr<T>(), Tf.data_ptr<T>(),
                       last.data_ptr<int32_t>());
  prof.lap("fwd raster");
  return {out, Tf, last, std::static_pointer_cast<RasterState>(st)};
}

template <typename T, int FC>
std::vector<torch::Tensor> backward_impl(const RasterState& st0, const torch::Tensor& Tfin, const torch::Tensor& last,
                                         const torch::Tensor& g_out, const torch::Tensor& g_T) {
  const auto& st = static_cast<const RasterStateT<T>&>(st0);
  const Binning& B = st.B;
  const int H = st.H, W = st.W, F = st.F;
  const int64_t M = int64_t(st.order.size()), N = st.N;
  Prof prof;
  const int G = NPRM + F;
  // one gradient record per (Gaussian, tile) slot; every used slot is written by the backward
  std::unique_ptr<T[]> gis(new T[size_t(B.kstart[M]) * G + 1]);
  backward_tiles<T, FC>(B, st.prm.data(), st.fk.data(), st.thr.data(), F, H, W, Tfin.data_ptr<T>(), last.data_ptr<int32_t>(),
                        g_out.data_ptr<T>(), g_T.data_ptr<T>(), gis.get());
  prof.lap("bwd raster");
  auto fopt = Tfin.options();
  auto gxy = torch::zeros({N, 2}, fopt), gcon = torch::zeros({N, 3}, fopt);
  auto gop = torch::zeros({N}, fopt), gfe = torch::zeros({N, F}, fopt);
  T *pxy = gxy.data_ptr<T>(), *pcon = gcon.data_ptr<T>(), *pop = gop.data_ptr<T>(), *pfe = gfe.data_ptr<T>();
  const int64_t* ord = st.order.data();
  parallel_range(M, 2048, threads_for(M, 4096), [&](int64_t kb, int64_t ke) {
    std::vector<T> s(G);
    for (int64_t k = kb; k < ke; ++k) {
      if (B.kcount[k] == 0) continue;
      std::fill(s.begin(), s.end(), T(0));
      for (int64_t p = B.kstart[k], e = p + B.kcount[k]; p < e; ++p) {
        const T* gi = &gis[size_t(p) * G];
        for (int q = 0; q < G; ++q) s[q] += gi[q];
      }
      const int64_t g = ord[k];
      pxy[2 * g] = s[0];
      pxy[2 * g + 1] = s[1];
      pcon[3 * g] = s[2];
      pcon[3 * g + 1] = s[3];
      pcon[3 * g + 2] = s[4];
      pop[g] = s[5];
      for (int ch = 0; ch < F; ++ch) pfe[g * F + ch] = s[NPRM + ch];
    }
  });
  prof.lap("bwd reduce");
  return {gxy, gcon, gop, gfe};
}

#define ST_DISPATCH_F(F, T, CALL)          \
  switch (F) {                             \
    case 1: return CALL(T, 1);             \
    case 2: return CALL(T, 2);             \
    case 3: return CALL(T, 3);             \
    case 4: return CALL(T, 4);             \
    case 5: return CALL(T, 5);             \
    case 6: return CALL(T, 6);             \
    case 7: return CALL(T, 7);             \
    case 8: return CALL(T, 8);             \
    default: return CALL(T, 0);            \
  }

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, std::shared_ptr<RasterState>> forward(
    torch::Tensor xy, torch::Tensor conic, torch::Tensor opac, torch::Tensor feats, torch::Tensor order, int64_t H,
    int64_t W) {
  check_inputs(xy, conic, opac, feats, order);
  TORCH_CHECK(H > 0 && W > 0, "image size must be positive");
  const int64_t N = xy.size(0);
  {
    const int64_t* o = order.data_ptr<int64_t>();
    for (int64_t i = 0; i < order.size(0); ++i) TORCH_CHECK(o[i] >= 0 && o[i] < N, "order index out of range");
  }
  const int F = int(feats.size(1));
#define FWD_CALL(T, FC) forward_impl<T, FC>(xy, conic, opac, feats, order, int(H), int(W))
  if (xy.scalar_type() == torch::kFloat32) {
    ST_DISPATCH_F(F, float, FWD_CALL)
  } else if (xy.scalar_type() == torch::kFloat64) {
    return FWD_CALL(double, 0);  // float64 (tests, checks): generic channel count only
  }
#undef FWD_CALL
  TORCH_CHECK(false, "raster_cpu: only float32 / float64 are supported");
}

std::vector<torch::Tensor> backward(std::shared_ptr<RasterState> st, torch::Tensor Tfin, torch::Tensor last,
                                    torch::Tensor g_out, torch::Tensor g_T) {
  TORCH_CHECK(st != nullptr, "raster_cpu backward: missing forward state");
  TORCH_CHECK(Tfin.is_contiguous() && last.is_contiguous() && g_out.is_contiguous() && g_T.is_contiguous(),
              "raster_cpu backward: tensors must be contiguous");
  TORCH_CHECK(g_out.scalar_type() == st->dtype && g_T.scalar_type() == st->dtype && Tfin.scalar_type() == st->dtype &&
                  last.scalar_type() == torch::kInt32,
              "raster_cpu backward: dtype mismatch");
  TORCH_CHECK(Tfin.size(0) == st->H && Tfin.size(1) == st->W && g_out.numel() == int64_t(st->H) * st->W * st->F &&
                  g_T.numel() == int64_t(st->H) * st->W && last.numel() == int64_t(st->H) * st->W,
              "raster_cpu backward: shape mismatch");
  const int F = st->F;
#define BWD_CALL(T, FC) backward_impl<T, FC>(*st, Tfin, last, g_out, g_T)
  if (st->dtype == torch::kFloat32) {
    ST_DISPATCH_F(F, float, BWD_CALL)
  } else if (st->dtype == torch::kFloat64) {
    return BWD_CALL(double, 0);
  }
#undef BWD_CALL
  TORCH_CHECK(false, "raster_cpu: only float32 / float64 are supported");
}

}  // namespace

// mesh_cpu.cpp: the visibility pass of styletalker/reconstruct/raster.py
std::vector<torch::Tensor> mesh_visibility(torch::Tensor fxy, torch::Tensor fz, torch::Tensor fids, int64_t W,
                                           int64_t H, int64_t pad, bool soft, int64_t max_pairs);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<RasterState, std::shared_ptr<RasterState>>(m, "RasterState")
      .def_property_readonly("n_isect", &RasterState::n_isect)
      .def_property_readonly("n_feats", [](const RasterState& s) { return s.F; });
  namespace py = pybind11;
  m.def("forward", &forward, py::call_guard<py::gil_scoped_release>(), "tile rasterizer forward: (out (H,W,F), T_final (H,W), last (H,W) int32, state for backward)");
  m.def("backward", &backward, py::call_guard<py::gil_scoped_release>(), "tile rasterizer backward: (grad xy, grad conic, grad opacity, grad feats)");
  m.def("project_forward", &project_forward, py::call_guard<py::gil_scoped_release>(), "EWA projection: (xy, conic, depth, valid)");
  m.def("project_backward", &project_backward, py::call_guard<py::gil_scoped_release>(), "EWA projection backward: (grad means, grad quats, grad scales)");
  m.def("sort_by_depth", &sort_by_depth, "indices of valid Gaussians by ascending depth (stable)");
  m.def("mesh_visibility", &mesh_visibility, py::call_guard<py::gil_scoped_release>(),
        "triangle mesh visibility: (face per pixel (H*W,) int64 or -1, inside (H*W,) bool, band pairs (1,))");
  m.attr("TILE") = TILE;
}
