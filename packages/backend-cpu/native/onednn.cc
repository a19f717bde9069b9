// The native provider of the CPU backend: the convolutions, GEMM and batch-norm of a ResNet on oneDNN
// (the library inside PyTorch), through N-API. Every function works on the caller's arrays in place
// (Float32Arrays, most of them views of the WebAssembly memory the other provider uses): nothing is
// copied in or out, and the JavaScript side never sees oneDNN's own layouts.
//
// Convolutions run on oneDNN's blocked layouts (nChw16c and friends), where its AVX-512/AVX2 kernels
// are 2-4x faster than on plain NCHW; operands are reordered into a scratch arena on the way in and
// out. Reordered weights are cached by their content version, which JavaScript renews at every
// in-place write, so inference reorders each weight once and a cache entry is never stale.
// Primitives are cached by shape. Threads: oneDNN's OpenMP pool, also used by the kernels here.
#include <napi.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

engine& cpu() {
  static engine e(engine::kind::cpu, 0);
  return e;
}
stream& queue() {
  static stream s(cpu());
  return s;
}

// --- arguments ---------------------------------------------------------------------------------

/** The elements of a Float32Array argument, or null for null/undefined. */
float* floats(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  return v.As<Napi::Float32Array>().Data();
}

int64_t integer(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }
bool flag(const Napi::Value& v) { return v.As<Napi::Boolean>().Value(); }

/** A convolution's geometry, in the field order of src/native.ts. */
struct Geometry {
  int64_t n, c, h, w, k, r, s, strideH, strideW, padT, padL, padB, padR, dilH, dilW, groups, oh, ow;
  explicit Geometry(const Napi::Value& v) {
    const int32_t* g = v.As<Napi::Int32Array>().Data();
    int64_t* f = &n;
    for (int i = 0; i < 18; i++) f[i] = g[i];
  }
  memory::dims src() const { return {n, c, h, w}; }
  memory::dims dst() const { return {n, k, oh, ow}; }
  memory::dims weights() const {
    return groups == 1 ? memory::dims{k, c, r, s} : memory::dims{groups, k / groups, c / groups, r, s};
  }
  tag weightsTag() const { return groups == 1 ? tag::oihw : tag::goihw; }
  std::string key() const {
    std::string out;
    for (const int64_t* f = &n; f <= &ow; f++) out += std::to_string(*f) + ",";
    return out;
  }
  /** 3x3, stride 1, undilated, ungrouped, channels in whole 16-lane blocks: what oneDNN's Winograd takes. */
  bool winogradShape() const {
    return r == 3 && s == 3 && strideH == 1 && strideW == 1 && dilH == 1 && dilW == 1 && groups == 1 && c % 16 == 0 &&
           k % 16 == 0;
  }
};

/**
 * The layout an activation [N, C, H, W] has in this backend's memory: oneDNN's nChw16c when C is a
 * whole number of 16-channel blocks (what its AVX kernels run on), else plain NCHW. JavaScript keeps
 * every tensor the native ops touch in this layout (src/layout.ts), so they pass between convolutions
 * and batch-norm without reorders.
 */
memory::desc activation(const memory::dims& d) { return memory::desc(d, dt::f32, d[1] % 16 == 0 ? tag::nChw16c : tag::nchw); }

// --- memory --------------------------------------------------------------------------------------

/** A grow-only buffer of whole pages, mapped and unmapped directly, so a released one leaves no resident memory behind. */
class Buffer {
 public:
  void* get(size_t bytes) {
    if (bytes > size_) {
      release();
      const size_t size = (bytes + 4095) / 4096 * 4096;
      void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      data_ = p;
      size_ = size;
    }
    return data_;
  }
  void release() {
    if (data_) munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  ~Buffer() { release(); }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

/**
 * Scratch for operands in oneDNN's layouts: one buffer per role, reused by every call (calls never
 * overlap): 0 and 1 activations, 2 weights being folded, 3 weights packed for one call, 4 the
 * primitives' own scratchpads (oneDNN's user mode: one buffer for all, not one per primitive).
 */
Buffer scratch[5];

/**
 * `user` (plain layout, the caller's array) as `want`: the array itself when the layouts agree, else
 * a reorder into scratch slot `slot` (when `copyIn`; output operands skip it).
 */
memory operand(const memory::desc& want, const memory::desc& userDesc, float* user, int slot, bool copyIn) {
  memory u(userDesc, cpu(), user);
  if (want == userDesc) return u;
  memory m(want, cpu(), scratch[slot].get(want.get_size()));
  if (copyIn) reorder(u, m).execute(queue(), u, m);
  return m;
}

/** Copies `m` back into the caller's array when it was staged in scratch. */
void writeBack(memory& m, const memory::desc& userDesc, float* user) {
  if (m.get_data_handle() == user) return;
  memory u(userDesc, cpu(), user);
  reorder(m, u).execute(queue(), m, u);
}

/** A weight tensor as the caller holds it: its elements, and the version of their contents. */
struct Weights {
  float* data;
  double version;
};

/**
 * Weights in the layout a primitive wants, optionally with a per-output-channel scale folded in
 * (w·scale[k]: a batch-norm folded into the convolution), made once per content version. JavaScript
 * renews a version at every in-place write, so an entry can never be stale. One entry per weight
 * array, scale array and layout: a newer version of the same array is reordered into its entry's
 * memory, so training (new weights every step) holds one copy per weight and format, and inference
 * reorders each weight once. Least recently used entries go past kWeightCacheBytes.
 */
class WeightCache {
 public:
  /**
   * The weights packed as `want` for this call only, in scratch: for weights new at every call
   * (training), which a cache entry would only hold on to.
   */
  memory once(Weights w, const Weights* scale, const memory::desc& want, const memory::desc& userDesc, int64_t outChannels) {
    memory m(want, cpu(), scratch[3].get(want.get_size()));
    pack(w, scale, m, userDesc, outChannels);
    return m;
  }

  memory get(Weights w, const Weights* scale, const memory::desc& want, const memory::desc& userDesc, int64_t outChannels) {
    if (want == userDesc && !scale) return memory(userDesc, cpu(), w.data);
    Entry* e = find(w.data, scale ? scale->data : nullptr, want);
    if (e && e->version == w.version && e->scaleVersion == (scale ? scale->version : 0)) return e->packed;
    if (!e) {
      entries_.push_front({w.data, scale ? scale->data : nullptr, want, -1, -1, memory(want, cpu())});
      e = &entries_.front();
      bytes_ += want.get_size();
      while (bytes_ > kWeightCacheBytes && entries_.size() > 1) {
        bytes_ -= entries_.back().desc.get_size();
        entries_.pop_back();
      }
    }
    pack(w, scale, e->packed, userDesc, outChannels);
    e->version = w.version;
    e->scaleVersion = scale ? scale->version : 0;
    return e->packed;
  }
  void clear() {
    entries_.clear();
    bytes_ = 0;
  }
  size_t bytes() const { return bytes_; }

 private:
  static constexpr size_t kWeightCacheBytes = size_t(1) << 30;
  struct Entry {
    const float* weights;
    const float* scale;
    memory::desc desc;
    double version, scaleVersion;
    memory packed;
  };
  Entry* find(const float* weights, const float* scale, const memory::desc& desc) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->weights == weights && it->scale == scale && it->desc == desc) {
        entries_.splice(entries_.begin(), entries_, it);
        return &entries_.front();
      }
    return nullptr;
  }
  std::list<Entry> entries_;
  size_t bytes_ = 0;

  /** Reorders w (times scale per output channel) into `packed`. */
  static void pack(Weights w, const Weights* scale, memory& packed, const memory::desc& userDesc, int64_t outChannels) {
    memory u(userDesc, cpu(), w.data);
    if (scale) {
      // Fold first, in the caller's layout ([K, C/g, R, S] row-major: a run per output channel).
      const size_t n = userDesc.get_size() / sizeof(float), run = n / outChannels;
      float* folded = static_cast<float*>(scratch[2].get(userDesc.get_size()));
      for (int64_t k = 0; k < outChannels; k++)
        for (size_t i = 0; i < run; i++) folded[k * run + i] = w.data[k * run + i] * scale->data[k];
      u = memory(userDesc, cpu(), folded);
    }
    reorder(u, packed).execute(queue(), u, packed);
    // Scaled weights are inference's, packed once each: the folding buffer is not needed again soon.
    if (scale) scratch[2].release();
  }
};
WeightCache weightCache;

// --- primitive cache ----------------------------------------------------------------------------

/** Attributes that leave a primitive's scratchpad to the caller: scratch slot 4, shared by all. */
primitive_attr userScratchpad() {
  primitive_attr attr;
  attr.set_scratchpad_mode(scratchpad_mode::user);
  return attr;
}

/** `args` plus the scratchpad a primitive described by `pd` needs. */
std::unordered_map<int, memory> withScratchpad(std::unordered_map<int, memory> args, const memory::desc& pad) {
  if (pad.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(pad, cpu(), scratch[4].get(pad.get_size())));
  return args;
}

/** The primitives of one convolution shape and epilogue, made once. */
struct Conv {
  memory::desc src, weights, bias, dst, userSrc, userWeights, userDst;
  /** The forward; made on first use (Winograd: from the second sighting of a weight, see below). */
  convolution_forward::primitive_desc fwdDesc;
  primitive fwd;
  /**
   * Winograd only: the forward for weights new at every call. The inference primitive above takes weights
   * already transformed (cached; a 1-2 ms transform for 64x64 channels), which pays only when the
   * same weights come again; this one transforms them as it goes, which costs less per call. Training
   * convolutions (no folded scale) take this one, inference ones with a batch-norm folded in the other.
   */
  convolution_forward::primitive_desc onceDesc;
  primitive fwdOnce;
  bool hasOnce = false;
  memory::desc weightsOnce;
  /** Scratchpads of the primitives above and below, in the same order. */
  memory::desc fwdPad, fwdOncePad, bwdDataPad, bwdWeightsPad;
  primitive bwdData;
  primitive bwdWeights;
  memory::desc bwdDataWeights, bwdDataDiffDst, bwdDataDiffSrc;
  memory::desc bwdWeightsSrc, bwdWeightsDiffDst, bwdWeightsDiff;
  bool hasBwdData = false, hasBwdWeights = false;
  std::string impl;
};

std::unordered_map<std::string, std::unique_ptr<Conv>> convs;

/**
 * Which algorithm a pass takes. oneDNN's Winograd F(4x4, 3x3) measured against its direct kernels
 * on AVX-512 at ResNet-20's shapes (batch 128, 2 threads): forward and data gradient 1.5-1.6x faster
 * from 32 channels (0.6-0.9x at 16), filter gradient 1.5-2x faster from 16.
 */
algorithm algorithmFor(const Geometry& g, int pass) {
  if (!g.winogradShape()) return algorithm::convolution_direct;
  const int64_t least = pass == 2 ? 16 : 32;
  return g.c >= least && g.k >= least ? algorithm::convolution_winograd : algorithm::convolution_direct;
}

convolution_forward::primitive_desc forwardDesc(const Geometry& g, bool bias, bool residual, bool relu, algorithm alg,
                                                 prop_kind prop, bool ownLayouts = true) {
  // The operands' own layouts first, so nothing is reordered; any layout if no kernel takes those.
  // A plain input (few channels: the stem's image) is left to the kernel's choice and reordered on the
  // way in: oneDNN's stem kernel takes 7x7/2 over 3 channels 4x faster from its own layout than from NCHW.
  const memory::desc src = ownLayouts && g.c % 16 == 0 ? activation(g.src()) : memory::desc(g.src(), dt::f32, tag::any);
  const memory::desc dst = ownLayouts ? activation(g.dst()) : memory::desc(g.dst(), dt::f32, tag::any);
  const memory::desc w(g.weights(), dt::f32, tag::any);
  const memory::desc b = bias ? memory::desc({g.k}, dt::f32, tag::x) : memory::desc();
  const memory::dims strides{g.strideH, g.strideW}, dil{g.dilH - 1, g.dilW - 1}, padL{g.padT, g.padL}, padR{g.padB, g.padR};
  post_ops ops;
  if (residual) ops.append_sum(1.f);
  if (relu) ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  primitive_attr attr = userScratchpad();
  attr.set_post_ops(ops);
  auto desc = bias ? convolution_forward::desc(prop, alg, src, w, b, dst, strides, dil, padL, padR)
                   : convolution_forward::desc(prop, alg, src, w, dst, strides, dil, padL, padR);
  try {
    return convolution_forward::primitive_desc(desc, attr, cpu());
  } catch (const dnnl::error&) {
    if (!ownLayouts) throw;
    return forwardDesc(g, bias, residual, relu, alg, prop, false);
  }
}

/** The forward primitive of a shape and its algorithm: Winograd where it pays and is implemented, else direct. */
std::pair<convolution_forward::primitive_desc, algorithm> bestForward(const Geometry& g, bool bias, bool residual, bool relu,
                                                                      int pass, prop_kind prop) {
  const algorithm alg = algorithmFor(g, pass);
  if (alg == algorithm::convolution_winograd) try {
      return {forwardDesc(g, bias, residual, relu, alg, prop), alg};
    } catch (const dnnl::error&) {
    }
  return {forwardDesc(g, bias, residual, relu, algorithm::convolution_direct, prop), algorithm::convolution_direct};
}

Conv& forwardConv(const Geometry& g, bool bias, bool residual, bool relu) {
  const std::string key = "f" + g.key() + std::to_string(bias) + std::to_string(residual) + std::to_string(relu);
  auto& slot = convs[key];
  if (slot) return *slot;
  auto [pd, alg] = bestForward(g, bias, residual, relu, 0, prop_kind::forward_inference);
  auto c = std::make_unique<Conv>();
  c->src = pd.src_desc();
  c->weights = pd.weights_desc();
  c->dst = pd.dst_desc();
  if (bias) c->bias = pd.bias_desc();
  c->userSrc = activation(g.src());
  c->userWeights = memory::desc(g.weights(), dt::f32, g.weightsTag());
  c->userDst = activation(g.dst());
  c->fwdDesc = pd;
  c->fwdPad = pd.scratchpad_desc();
  c->impl = pd.impl_info_str();
  if (alg == algorithm::convolution_winograd) {
    auto once = forwardDesc(g, bias, residual, relu, alg, prop_kind::forward_training);
    if (once.src_desc() == c->src && once.dst_desc() == c->dst && !(once.weights_desc() == c->weights)) {
      c->onceDesc = once;
      c->hasOnce = true;
      c->weightsOnce = once.weights_desc();
      c->fwdOncePad = once.scratchpad_desc();
    }
  }
  slot = std::move(c);
  return *slot;
}

Conv& backwardConv(const Geometry& g, int pass) {
  const std::string key = (pass == 1 ? "d" : "w") + g.key();
  auto& slot = convs[key];
  if (slot) return *slot;
  auto c = std::make_unique<Conv>();
  c->userSrc = activation(g.src());
  c->userWeights = memory::desc(g.weights(), dt::f32, g.weightsTag());
  c->userDst = activation(g.dst());
  auto [hint, alg] = bestForward(g, false, false, false, pass, prop_kind::forward_training);
  const memory::desc w(g.weights(), dt::f32, tag::any);
  const memory::dims strides{g.strideH, g.strideW}, dil{g.dilH - 1, g.dilW - 1}, padL{g.padT, g.padL}, padR{g.padB, g.padR};
  // The operands' own layouts where a kernel takes them (no reorders), else any.
  const auto own = [&](auto make) {
    try {
      return make(c->userSrc, c->userDst);
    } catch (const dnnl::error&) {
      return make(memory::desc(g.src(), dt::f32, tag::any), memory::desc(g.dst(), dt::f32, tag::any));
    }
  };
  if (pass == 1) {
    auto pd = own([&](const memory::desc& src, const memory::desc& dst) {
      return convolution_backward_data::primitive_desc({alg, src, w, dst, strides, dil, padL, padR}, userScratchpad(), cpu(), hint);
    });
    c->bwdDataWeights = pd.weights_desc();
    c->bwdDataDiffDst = pd.diff_dst_desc();
    c->bwdDataDiffSrc = pd.diff_src_desc();
    c->bwdData = convolution_backward_data(pd);
    c->bwdDataPad = pd.scratchpad_desc();
    c->impl = pd.impl_info_str();
  } else {
    auto pd = own([&](const memory::desc& src, const memory::desc& dst) {
      return convolution_backward_weights::primitive_desc({alg, src, w, dst, strides, dil, padL, padR}, userScratchpad(), cpu(), hint);
    });
    c->bwdWeightsSrc = pd.src_desc();
    c->bwdWeightsDiffDst = pd.diff_dst_desc();
    c->bwdWeightsDiff = pd.diff_weights_desc();
    c->bwdWeights = convolution_backward_weights(pd);
    c->bwdWeightsPad = pd.scratchpad_desc();
    c->impl = pd.impl_info_str();
  }
  slot = std::move(c);
  return *slot;
}

// --- convolutions -------------------------------------------------------------------------------

/** A weight argument (data, version) pair, or null. */
Weights weightsOf(const Napi::Value& data, const Napi::Value& version) { return {floats(data), version.As<Napi::Number>().DoubleValue()}; }

/**
 * conv2dForward(x, w, wVersion, scale|null, scaleVersion, bias|null, residual|null, y, geometry, relu):
 * y = act(conv(x, w)·scale + bias + residual), scale folded into the packed weights.
 */
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  const Geometry g(info[8]);
  float *x = floats(info[0]), *bias = floats(info[5]), *residual = floats(info[6]), *y = floats(info[7]);
  const Weights w = weightsOf(info[1], info[2]);
  const bool scaled = !info[3].IsNull() && !info[3].IsUndefined();
  const Weights scale = scaled ? weightsOf(info[3], info[4]) : Weights{nullptr, 0};
  const bool relu = flag(info[9]);
  Conv& c = forwardConv(g, bias, residual, relu);
  memory src = operand(c.src, c.userSrc, x, 0, true);
  // A scale is an inference batch-norm folded in: those weights come again. Chosen by the call alone,
  // so a run computes the same whatever ran before it (a resumed run repeats an unbroken one).
  const bool once = c.hasOnce && !scaled;
  if (once && !c.fwdOnce) c.fwdOnce = convolution_forward(c.onceDesc);
  if (!once) {
    if (!c.fwd) c.fwd = convolution_forward(c.fwdDesc);
    c.fwdOnce = primitive();
  }
  const Weights* sp = scaled ? &scale : nullptr;
  memory wm = once ? weightCache.once(w, sp, c.weightsOnce, c.userWeights, g.k) : weightCache.get(w, sp, c.weights, c.userWeights, g.k);
  // The sum post-op adds what the destination holds: put the residual there, in the primitive's layout.
  memory dst = operand(c.dst, c.userDst, y, 1, false);
  if (residual) {
    memory r(c.userDst, cpu(), residual);
    if (dst.get_data_handle() == y) std::memcpy(y, residual, c.userDst.get_size());
    else reorder(r, dst).execute(queue(), r, dst);
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(c.bias, cpu(), bias));
  (once ? c.fwdOnce : c.fwd).execute(queue(), withScratchpad(std::move(args), once ? c.fwdOncePad : c.fwdPad));
  writeBack(dst, c.userDst, y);
  queue().wait();
  return info.Env().Undefined();
}

/** conv2dBackwardData(dy, w, wVersion, dx, geometry). */
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  const Geometry g(info[4]);
  float *dy = floats(info[0]), *dx = floats(info[3]);
  Conv& c = backwardConv(g, 1);
  memory ddst = operand(c.bwdDataDiffDst, c.userDst, dy, 0, true);
  memory wm = weightCache.get(weightsOf(info[1], info[2]), nullptr, c.bwdDataWeights, c.userWeights, g.k);
  memory dsrc = operand(c.bwdDataDiffSrc, c.userSrc, dx, 1, false);
  c.bwdData.execute(queue(), withScratchpad({{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dsrc}}, c.bwdDataPad));
  writeBack(dsrc, c.userSrc, dx);
  queue().wait();
  return info.Env().Undefined();
}

/** conv2dBackwardFilter(x, dy, dw, geometry). */
Napi::Value Conv2dBackwardFilter(const Napi::CallbackInfo& info) {
  const Geometry g(info[3]);
  float *x = floats(info[0]), *dy = floats(info[1]), *dw = floats(info[2]);
  Conv& c = backwardConv(g, 2);
  memory src = operand(c.bwdWeightsSrc, c.userSrc, x, 0, true);
  memory ddst = operand(c.bwdWeightsDiffDst, c.userDst, dy, 1, true);
  memory dwm = operand(c.bwdWeightsDiff, c.userWeights, dw, 2, false);
  c.bwdWeights.execute(queue(), withScratchpad({{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwm}}, c.bwdWeightsPad));
  writeBack(dwm, c.userWeights, dw);
  queue().wait();
  return info.Env().Undefined();
}

/** convImpl(geometry, pass): the oneDNN implementation a shape runs ('jit:avx512_core', 'jit_wino_4x3:...'), for tests and profiles. */
Napi::Value ConvImpl(const Napi::CallbackInfo& info) {
  const Geometry g(info[0]);
  const int pass = static_cast<int>(integer(info[1]));
  const Conv& c = pass == 0 ? forwardConv(g, false, false, false) : backwardConv(g, pass);
  return Napi::String::New(info.Env(), c.impl);
}

// --- GEMM -----------------------------------------------------------------------------------------

/** sgemm(transA, transB, m, n, k, a, aOffset, b, bOffset, c, cOffset): C = op(A)·op(B), row-major, offsets in elements. */
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  const bool ta = flag(info[0]), tb = flag(info[1]);
  const int64_t m = integer(info[2]), n = integer(info[3]), k = integer(info[4]);
  const float* a = floats(info[5]) + integer(info[6]);
  const float* b = floats(info[7]) + integer(info[8]);
  float* c = floats(info[9]) + integer(info[10]);
  if (m == 0 || n == 0) return info.Env().Undefined();
  if (k == 0) {
    std::memset(c, 0, sizeof(float) * m * n);
    return info.Env().Undefined();
  }
  const dnnl_status_t status =
      dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.f, a, ta ? m : k, b, tb ? k : n, 0.f, c, n);
  if (status != dnnl_success) Napi::Error::New(info.Env(), "oneDNN sgemm failed").ThrowAsJavaScriptException();
  return info.Env().Undefined();
}

// --- batch-norm -----------------------------------------------------------------------------------
// Over x [N, C, HW...]: threads split the channels; sums in float64. Written for the compiler's
// vectorizer (`omp simd` reductions), compiled for AVX-512 and AVX2 with a plain fallback.

#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/** max(v, 0) with NaN to 0, as the op interface's ReLU. */
inline float relu0(float v) { return v > 0.f ? v : 0.f; }

/**
 * Σ (x - shift) and Σ (x - shift)² over n floats, in float64: eight independent lanes, so the
 * compiler vectorizes it without fast-math (and the sums do not depend on the instruction set).
 */
__attribute__((always_inline)) inline void moments(const float* x, int64_t n, float shift, double& s1, double& s2) {
  double a[8] = {}, b[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) {
      const double d = double(x[j + l] - shift);
      a[l] += d;
      b[l] += d * d;
    }
  for (; j < n; j++) {
    const double d = double(x[j] - shift);
    a[0] += d;
    b[0] += d * d;
  }
  for (int l = 0; l < 8; l++) s1 += a[l], s2 += b[l];
}

/** Σ g and Σ g·(x - m)·is over n floats, in float64, eight lanes as in moments(). */
__attribute__((always_inline)) inline void gradSums(const float* g, const float* x, int64_t n, float m, float is, double& s1, double& s2) {
  double a[8] = {}, b[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) {
      a[l] += g[j + l];
      b[l] += double(g[j + l]) * double((x[j + l] - m) * is);
    }
  for (; j < n; j++) {
    a[0] += g[j];
    b[0] += double(g[j]) * double((x[j] - m) * is);
  }
  for (int l = 0; l < 8; l++) s1 += a[l], s2 += b[l];
}

/** One channel of batchNormTrain (see BatchNormTrain); `stride` = C·inner between images. */
HOT void bnTrainChannel(const float* x, const float* residual, float* y, float gamma, float beta, float* mean, float* invstd,
                        int64_t n, int64_t stride, int64_t inner, double eps, bool relu) {
  // One pass for both sums, shifted by a sample of the channel so the variance does not cancel.
  const float shift = x[0];
  double s = 0, ss = 0;
  for (int64_t i = 0; i < n; i++) {
    const float* p = x + i * stride;
    moments(p, inner, shift, s, ss);
  }
  const double count = double(n) * double(inner);
  const double m = s / count;
  const double is = 1.0 / std::sqrt(std::max(ss / count - m * m, 0.0) + eps);
  *mean = float(m + shift);
  *invstd = float(is);
  const float a = float(gamma * is), b = float(beta - (m + shift) * gamma * is);
  for (int64_t i = 0; i < n; i++) {
    const float* p = x + i * stride;
    float* q = y + i * stride;
    if (residual) {
      const float* r = residual + i * stride;
      if (relu) {
#pragma omp simd
        for (int64_t j = 0; j < inner; j++) q[j] = relu0(p[j] * a + b + r[j]);
      } else {
#pragma omp simd
        for (int64_t j = 0; j < inner; j++) q[j] = p[j] * a + b + r[j];
      }
    } else if (relu) {
#pragma omp simd
      for (int64_t j = 0; j < inner; j++) q[j] = relu0(p[j] * a + b);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < inner; j++) q[j] = p[j] * a + b;
    }
  }
}

/** One channel of batchNormBackward (see BatchNormBackward). */
HOT void bnBackwardChannel(const float* dy, const float* x, const float* y, float* dx, float* dres, float gamma, float m,
                           float is, float* dgamma, float* dbeta, int64_t n, int64_t stride, int64_t inner) {
  double sg = 0, sgx = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *d = dy + i * stride, *p = x + i * stride;
    if (y) {
      const float* q = y + i * stride;
      // The masked gradient, once: the residual's gradient when asked, and what the sums read.
      float* r = dres ? dres + i * stride : dx + i * stride;
#pragma omp simd
      for (int64_t j = 0; j < inner; j++) r[j] = q[j] > 0.f ? d[j] : 0.f;
      gradSums(r, p, inner, m, is, sg, sgx);
    } else {
      if (dres) std::memcpy(dres + i * stride, d, sizeof(float) * inner);
      gradSums(d, p, inner, m, is, sg, sgx);
    }
  }
  *dbeta = float(sg);
  *dgamma = float(sgx);
  const double count = double(n) * double(inner);
  const float k = gamma * is, mb = float(sg / count), mg = float(sgx / count);
  for (int64_t i = 0; i < n; i++) {
    const float *d = dy + i * stride, *p = x + i * stride;
    float* out = dx + i * stride;
    if (y) {
      // The masked gradient was kept in dresidual, or in dx itself, by the first pass.
      const float* r = dres ? dres + i * stride : out;
#pragma omp simd
      for (int64_t j = 0; j < inner; j++) out[j] = k * (r[j] - mb - (p[j] - m) * is * mg);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < inner; j++) out[j] = k * (d[j] - mb - (p[j] - m) * is * mg);
    }
  }
}

// The same in nChw16c (C a multiple of 16): a tile [inner][16] holds 16 channels of one image, so the
// kernels run 16 channels at a time, one vector per position. Threads split (block, run of images)
// for the sums and (image, block) for the element passes; the parts are added in a fixed order.

// Each kernel runs on the 16 lanes of a position: one AVX-512 register where the CPU has it (the
// layout exists for those kernels), else plain loops. (The compiler's vectorizer left the 16-lane loops
// scalar: it unrolls them first, and its vector types compare lane by lane under target_clones.)
#define AVX512 __attribute__((target("avx512f")))
const bool kAvx512 = __builtin_cpu_supports("avx512f");

AVX512 void tileMoments512(const float* x, int64_t count, int64_t stride, int64_t inner, const float* shift, double* out) {
  const __m512 sh = _mm512_loadu_ps(shift);
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
  for (int64_t i = 0; i < count; i++) {
    const float* p = x + i * stride;
    for (int64_t j = 0; j < inner * 16; j += 16) {
      const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(p + j), sh);
      const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
      const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
      s0 = _mm512_add_pd(s0, lo);
      s1 = _mm512_add_pd(s1, hi);
      q0 = _mm512_fmadd_pd(lo, lo, q0);
      q1 = _mm512_fmadd_pd(hi, hi, q1);
    }
  }
  _mm512_storeu_pd(out, s0), _mm512_storeu_pd(out + 8, s1), _mm512_storeu_pd(out + 16, q0), _mm512_storeu_pd(out + 24, q1);
}

/** Per-lane Σ (x - shift) and Σ (x - shift)² over `count` tiles `stride` apart: out[0..15], out[16..31]. */
void tileMoments(const float* x, int64_t count, int64_t stride, int64_t inner, const float* shift, double* out) {
  if (kAvx512) return tileMoments512(x, count, stride, inner, shift, out);
  double s[16] = {}, q[16] = {};
  for (int64_t i = 0; i < count; i++)
    for (int64_t j = 0; j < inner * 16; j += 16)
      for (int l = 0; l < 16; l++) {
        const double d = double(x[i * stride + j + l] - shift[l]);
        s[l] += d;
        q[l] += d * d;
      }
  for (int l = 0; l < 16; l++) out[l] = s[l], out[16 + l] = q[l];
}

AVX512 void tileAffine512(const float* x, const float* r, float* y, int64_t inner, const float* a, const float* b, bool relu) {
  const __m512 va = _mm512_loadu_ps(a), vb = _mm512_loadu_ps(b), zero = _mm512_setzero_ps();
  for (int64_t j = 0; j < inner * 16; j += 16) {
    __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), va, vb);
    if (r) v = _mm512_add_ps(v, _mm512_loadu_ps(r + j));
    // max(v, 0) with NaN to 0: keep v where v > 0 (false for NaN).
    if (relu) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), v);
    _mm512_storeu_ps(y + j, v);
  }
}

/** y = act(x·a + b + r) over one tile of `inner` positions. */
void tileAffine(const float* x, const float* r, float* y, int64_t inner, const float* a, const float* b, bool relu) {
  if (kAvx512) return tileAffine512(x, r, y, inner, a, b, relu);
  for (int64_t j = 0; j < inner * 16; j += 16)
    for (int l = 0; l < 16; l++) {
      const float v = x[j + l] * a[l] + b[l] + (r ? r[j + l] : 0.f);
      y[j + l] = relu ? relu0(v) : v;
    }
}

AVX512 void tileGradSums512(const float* dy, const float* x, const float* y, float* g, int64_t count, int64_t stride, int64_t inner,
                            const float* m, const float* is, double* out) {
  const __m512 vm = _mm512_loadu_ps(m), vi = _mm512_loadu_ps(is), zero = _mm512_setzero_ps();
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, t0 = s0, t1 = s0;
  for (int64_t i = 0; i < count; i++) {
    const int64_t o = i * stride;
    for (int64_t j = o; j < o + inner * 16; j += 16) {
      __m512 d = _mm512_loadu_ps(dy + j);
      if (y) {
        d = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_loadu_ps(y + j), zero, _CMP_GT_OQ), d);
        _mm512_storeu_ps(g + j, d);
      }
      const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm), vi);
      const __m512d dl = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
      const __m512d dh = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
      const __m512d xl = _mm512_cvtps_pd(_mm512_castps512_ps256(xh));
      const __m512d xhh = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xh), 1)));
      s0 = _mm512_add_pd(s0, dl);
      s1 = _mm512_add_pd(s1, dh);
      t0 = _mm512_fmadd_pd(dl, xl, t0);
      t1 = _mm512_fmadd_pd(dh, xhh, t1);
    }
  }
  _mm512_storeu_pd(out, s0), _mm512_storeu_pd(out + 8, s1), _mm512_storeu_pd(out + 16, t0), _mm512_storeu_pd(out + 24, t1);
}

/** g = dy masked where y <= 0 (stored to g when y is given) and per-lane Σ g, Σ g·(x - m)·is over `count` tiles. */
void tileGradSums(const float* dy, const float* x, const float* y, float* g, int64_t count, int64_t stride, int64_t inner,
                  const float* m, const float* is, double* out) {
  if (kAvx512) return tileGradSums512(dy, x, y, g, count, stride, inner, m, is, out);
  double s[16] = {}, t[16] = {};
  for (int64_t i = 0; i < count; i++)
    for (int64_t j = i * stride; j < i * stride + inner * 16; j += 16)
      for (int l = 0; l < 16; l++) {
        float d = dy[j + l];
        if (y) g[j + l] = d = y[j + l] > 0.f ? d : 0.f;
        s[l] += d;
        t[l] += double(d) * double((x[j + l] - m[l]) * is[l]);
      }
  for (int l = 0; l < 16; l++) out[l] = s[l], out[16 + l] = t[l];
}

AVX512 void tileGradApply512(const float* g, const float* x, float* dx, int64_t inner, const float* k, const float* m, const float* is,
                             const float* mb, const float* mg) {
  const __m512 vk = _mm512_loadu_ps(k), vm = _mm512_loadu_ps(m), vi = _mm512_loadu_ps(is), vb = _mm512_loadu_ps(mb),
               vg = _mm512_loadu_ps(mg);
  for (int64_t j = 0; j < inner * 16; j += 16) {
    const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm), vi);
    const __m512 v = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(g + j), vb), _mm512_mul_ps(xh, vg));
    _mm512_storeu_ps(dx + j, _mm512_mul_ps(vk, v));
  }
}

/** dx = k·(g - mb - (x - m)·is·mg) over one tile. */
void tileGradApply(const float* g, const float* x, float* dx, int64_t inner, const float* k, const float* m, const float* is,
                   const float* mb, const float* mg) {
  if (kAvx512) return tileGradApply512(g, x, dx, inner, k, m, is, mb, mg);
  for (int64_t j = 0; j < inner * 16; j += 16)
    for (int l = 0; l < 16; l++) dx[j + l] = k[l] * (g[j + l] - mb[l] - (x[j + l] - m[l]) * is[l] * mg[l]);
}

/** How the sums of an nChw16c tensor split: runs of images per 16-channel block, enough tasks for every thread twice. */
struct Split {
  int64_t blocks, runs;
  Split(int64_t n, int64_t c) : blocks(c / 16) {
    const int64_t want = 2 * omp_get_max_threads();
    runs = std::max<int64_t>(1, std::min<int64_t>(n, (want + blocks - 1) / blocks));
  }
  int64_t tasks() const { return blocks * runs; }
  int64_t begin(int64_t n, int64_t run) const { return run * n / runs; }
};

void batchNormTrainBlocked(const float* x, const float* gamma, const float* beta, const float* residual, float* y, float* mean,
                           float* invstd, int64_t n, int64_t c, int64_t inner, double eps, bool relu) {
  const Split sp(n, c);
  std::vector<double> parts(sp.tasks() * 32);
  std::vector<float> a(c), b(c);
  const int64_t image = c * inner;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < sp.tasks(); t++) {
    const int64_t blk = t / sp.runs, run = t % sp.runs, n0 = sp.begin(n, run), n1 = sp.begin(n, run + 1);
    // Shifted by the block's first position of image 0, so the variance does not cancel.
    tileMoments(x + n0 * image + blk * inner * 16, n1 - n0, image, inner, x + blk * inner * 16, parts.data() + t * 32);
  }
  const double count = double(n) * double(inner);
  for (int64_t ch = 0; ch < c; ch++) {
    const int64_t blk = ch / 16, l = ch % 16;
    double s1 = 0, s2 = 0;
    for (int64_t run = 0; run < sp.runs; run++) {
      s1 += parts[(blk * sp.runs + run) * 32 + l];
      s2 += parts[(blk * sp.runs + run) * 32 + 16 + l];
    }
    const double shift = x[blk * inner * 16 + l], m = s1 / count;
    const double is = 1.0 / std::sqrt(std::max(s2 / count - m * m, 0.0) + eps);
    mean[ch] = float(m + shift);
    invstd[ch] = float(is);
    a[ch] = float(gamma[ch] * is);
    b[ch] = float(beta[ch] - (m + shift) * gamma[ch] * is);
  }
  const int64_t blocks = c / 16;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n * blocks; t++) {
    const int64_t o = t * inner * 16, blk = t % blocks;
    tileAffine(x + o, residual ? residual + o : nullptr, y + o, inner, a.data() + blk * 16, b.data() + blk * 16, relu);
  }
}

void batchNormBackwardBlocked(const float* dy, const float* x, const float* gamma, const float* mean, const float* invstd,
                              const float* y, float* dx, float* dgamma, float* dbeta, float* dres, int64_t n, int64_t c,
                              int64_t inner) {
  const Split sp(n, c);
  std::vector<double> parts(sp.tasks() * 32);
  const int64_t image = c * inner;
  // The masked gradient goes to dresidual when asked, else into dx, which the second pass overwrites.
  float* g = y ? (dres ? dres : dx) : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < sp.tasks(); t++) {
    const int64_t blk = t / sp.runs, run = t % sp.runs, n0 = sp.begin(n, run), n1 = sp.begin(n, run + 1);
    const int64_t o = n0 * image + blk * inner * 16;
    tileGradSums(dy + o, x + o, y ? y + o : nullptr, g ? g + o : nullptr, n1 - n0, image, inner, mean + blk * 16, invstd + blk * 16,
                 parts.data() + t * 32);
  }
  if (!y && dres) std::memcpy(dres, dy, sizeof(float) * n * image);
  std::vector<float> k(c), mb(c), mg(c);
  const double count = double(n) * double(inner);
  for (int64_t ch = 0; ch < c; ch++) {
    const int64_t blk = ch / 16, l = ch % 16;
    double sg = 0, sgx = 0;
    for (int64_t run = 0; run < sp.runs; run++) {
      sg += parts[(blk * sp.runs + run) * 32 + l];
      sgx += parts[(blk * sp.runs + run) * 32 + 16 + l];
    }
    dbeta[ch] = float(sg);
    dgamma[ch] = float(sgx);
    k[ch] = gamma[ch] * invstd[ch];
    mb[ch] = float(sg / count);
    mg[ch] = float(sgx / count);
  }
  const int64_t blocks = c / 16;
  const float* src = g ? g : dy;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n * blocks; t++) {
    const int64_t o = t * inner * 16, blk = t % blocks * 16;
    tileGradApply(src + o, x + o, dx + o, inner, k.data() + blk, mean + blk, invstd + blk, mb.data() + blk, mg.data() + blk);
  }
}

/**
 * batchNormTrain(x, gamma, beta, residual|null, y, mean, invstd, n, c, inner, eps, relu) over x [N, C, inner]
 * in this backend's layout (nChw16c when C is a multiple of 16, see activation()):
 * y = act(gamma·(x - mean)·invstd + beta + residual) with the batch statistics (biased variance), sums
 * in float64.
 */
Napi::Value BatchNormTrain(const Napi::CallbackInfo& info) {
  const float *x = floats(info[0]), *gamma = floats(info[1]), *beta = floats(info[2]), *residual = floats(info[3]);
  float *y = floats(info[4]), *mean = floats(info[5]), *invstd = floats(info[6]);
  const int64_t n = integer(info[7]), c = integer(info[8]), inner = integer(info[9]);
  const double eps = info[10].As<Napi::Number>().DoubleValue();
  const bool relu = flag(info[11]), blocked = flag(info[12]);
  if (blocked) {
    batchNormTrainBlocked(x, gamma, beta, residual, y, mean, invstd, n, c, inner, eps, relu);
    return info.Env().Undefined();
  }
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < c; ch++) {
    const int64_t o = ch * inner;
    bnTrainChannel(x + o, residual ? residual + o : nullptr, y + o, gamma[ch], beta[ch], mean + ch, invstd + ch, n, c * inner,
                   inner, eps, relu);
  }
  return info.Env().Undefined();
}

/**
 * batchNormBackward(dy, x, gamma, mean, invstd, y|null, dx, dgamma, dbeta, dresidual|null, n, c, inner, blocked):
 * g = dy masked where y <= 0 (when y is given), dresidual = g; dbeta = Σ g, dgamma = Σ g·x̂,
 * dx = gamma·invstd·(g - dbeta/M - x̂·dgamma/M).
 */
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  const float *dy = floats(info[0]), *x = floats(info[1]), *gamma = floats(info[2]), *mean = floats(info[3]),
              *invstd = floats(info[4]), *y = floats(info[5]);
  float *dx = floats(info[6]), *dgamma = floats(info[7]), *dbeta = floats(info[8]), *dres = floats(info[9]);
  const int64_t n = integer(info[10]), c = integer(info[11]), inner = integer(info[12]);
  if (flag(info[13])) {
    batchNormBackwardBlocked(dy, x, gamma, mean, invstd, y, dx, dgamma, dbeta, dres, n, c, inner);
    return info.Env().Undefined();
  }
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < c; ch++) {
    const int64_t o = ch * inner;
    bnBackwardChannel(dy + o, x + o, y ? y + o : nullptr, dx + o, dres ? dres + o : nullptr, gamma[ch], mean[ch], invstd[ch],
                      dgamma + ch, dbeta + ch, n, c * inner, inner);
  }
  return info.Env().Undefined();
}

AVX512 void tileMaxPool512(const float* x, float* y, int64_t h, int64_t w, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t pt, int64_t pl) {
  for (int64_t i = 0; i < oh; i++)
    for (int64_t j = 0; j < ow; j++) {
      const int64_t r0 = std::max<int64_t>(i * sh - pt, 0), r1 = std::min<int64_t>(i * sh - pt + kh, h);
      const int64_t c0 = std::max<int64_t>(j * sw - pl, 0), c1 = std::min<int64_t>(j * sw - pl + kw, w);
      __m512 m = _mm512_loadu_ps(x + (r0 * w + c0) * 16);
      for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) {
          const __m512 v = _mm512_loadu_ps(x + (r * w + c) * 16);
          const __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
          m = _mm512_mask_mov_ps(m, take, v);
        }
      _mm512_storeu_ps(y + (i * ow + j) * 16, m);
    }
}

/** The max of every output position's window over a tile, 16 channels a position; NaN wins, as the interface says. */
void tileMaxPool(const float* x, float* y, int64_t h, int64_t w, int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh,
                 int64_t sw, int64_t pt, int64_t pl) {
  if (kAvx512) return tileMaxPool512(x, y, h, w, oh, ow, kh, kw, sh, sw, pt, pl);
  for (int64_t i = 0; i < oh; i++)
    for (int64_t j = 0; j < ow; j++) {
      const int64_t r0 = std::max<int64_t>(i * sh - pt, 0), r1 = std::min<int64_t>(i * sh - pt + kh, h);
      const int64_t c0 = std::max<int64_t>(j * sw - pl, 0), c1 = std::min<int64_t>(j * sw - pl + kw, w);
      for (int l = 0; l < 16; l++) {
        float m = x[(r0 * w + c0) * 16 + l];
        for (int64_t r = r0; r < r1; r++)
          for (int64_t c = c0; c < c1; c++) {
            const float v = x[(r * w + c) * 16 + l];
            if (v > m || v != v) m = v;
          }
        y[(i * ow + j) * 16 + l] = m;
      }
    }
}

/** maxPool2d(x, y, n, c, h, w, oh, ow, kh, kw, sh, sw, pt, pl) over nChw16c (C a multiple of 16); threads split (image, block). */
Napi::Value MaxPool2d(const Napi::CallbackInfo& info) {
  const float* x = floats(info[0]);
  float* y = floats(info[1]);
  const int64_t n = integer(info[2]), c = integer(info[3]), h = integer(info[4]), w = integer(info[5]), oh = integer(info[6]),
                ow = integer(info[7]), kh = integer(info[8]), kw = integer(info[9]), sh = integer(info[10]), sw = integer(info[11]),
                pt = integer(info[12]), pl = integer(info[13]);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n * (c / 16); t++) tileMaxPool(x + t * h * w * 16, y + t * oh * ow * 16, h, w, oh, ow, kh, kw, sh, sw, pt, pl);
  return info.Env().Undefined();
}

/**
 * reorderActivation(src, dst, n, c, h, w, toBlocked): an activation from plain NCHW to nChw16c or back
 * (C a multiple of 16), out of place.
 */
Napi::Value ReorderActivation(const Napi::CallbackInfo& info) {
  const memory::dims d{integer(info[2]), integer(info[3]), integer(info[4]), integer(info[5])};
  const bool toBlocked = flag(info[6]);
  memory plain({d, dt::f32, tag::nchw}, cpu(), floats(toBlocked ? info[0] : info[1]));
  memory blocked({d, dt::f32, tag::nChw16c}, cpu(), floats(toBlocked ? info[1] : info[0]));
  if (toBlocked) reorder(plain, blocked).execute(queue(), plain, blocked);
  else reorder(blocked, plain).execute(queue(), blocked, plain);
  queue().wait();
  return info.Env().Undefined();
}

// --- set-up -----------------------------------------------------------------------------------------

/** setThreads(n): the OpenMP pool's size for every later call. */
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  omp_set_num_threads(static_cast<int>(integer(info[0])));
  return info.Env().Undefined();
}

/** info(): the library's version and the instruction set its kernels use. */
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dnnl_version_t* v = dnnl_version();
  Napi::Object out = Napi::Object::New(env);
  out.Set("version", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  const char* isa = "unknown";
  switch (get_effective_cpu_isa()) {
    case cpu_isa::avx512_core_amx: isa = "AVX-512 + AMX"; break;
    case cpu_isa::avx512_core_bf16: isa = "AVX-512 (bf16)"; break;
    case cpu_isa::avx512_core_vnni: isa = "AVX-512 (VNNI)"; break;
    case cpu_isa::avx512_core: isa = "AVX-512"; break;
    case cpu_isa::avx2_vnni: isa = "AVX2 (VNNI)"; break;
    case cpu_isa::avx2: isa = "AVX2"; break;
    case cpu_isa::avx: isa = "AVX"; break;
    case cpu_isa::sse41: isa = "SSE4.1"; break;
    default: break;
  }
  out.Set("isa", isa);
  out.Set("cachedWeightBytes", double(weightCache.bytes()));
  return out;
}

/** clearCaches(): drops cached primitives, reordered weights and scratch (tests; memory pressure). */
Napi::Value ClearCaches(const Napi::CallbackInfo& info) {
  convs.clear();
  weightCache.clear();
  for (auto& b : scratch) b.release();
  return info.Env().Undefined();
}

/** Turns a oneDNN error into a JavaScript one naming the call, instead of ending the process. */
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const dnnl::error& e) {
    Napi::Error::New(info.Env(), std::string("oneDNN: ") + e.what() + " (status " + std::to_string(int(e.status)) + ")")
        .ThrowAsJavaScriptException();
  } catch (const std::bad_alloc&) {
    Napi::Error::New(info.Env(), "oneDNN provider: out of memory").ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("conv2dForward", Napi::Function::New(env, guarded<Conv2dForward>));
  exports.Set("conv2dBackwardData", Napi::Function::New(env, guarded<Conv2dBackwardData>));
  exports.Set("conv2dBackwardFilter", Napi::Function::New(env, guarded<Conv2dBackwardFilter>));
  exports.Set("convImpl", Napi::Function::New(env, guarded<ConvImpl>));
  exports.Set("sgemm", Napi::Function::New(env, guarded<Sgemm>));
  exports.Set("batchNormTrain", Napi::Function::New(env, guarded<BatchNormTrain>));
  exports.Set("batchNormBackward", Napi::Function::New(env, guarded<BatchNormBackward>));
  exports.Set("reorderActivation", Napi::Function::New(env, guarded<ReorderActivation>));
  exports.Set("maxPool2d", Napi::Function::New(env, guarded<MaxPool2d>));
  exports.Set("setThreads", Napi::Function::New(env, guarded<SetThreads>));
  exports.Set("info", Napi::Function::New(env, guarded<Info>));
  exports.Set("clearCaches", Napi::Function::New(env, guarded<ClearCaches>));
  return exports;
}

}  // namespace

NODE_API_MODULE(residual_onednn, Init)
