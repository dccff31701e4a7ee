// Summation splatting on the CPU with its gradients: the semantics of core/ops/softsplat.py.
//
// prepare(flow)  flow N x 2 x H x W (pixels, x first) -> (cell N*H*W x 2 int32 (x0, y0) of the top-left target,
//                y0 = INT32_MIN if no corner lands on the frame; weight N*H*W x 4 of the corners (0,0), (0,1),
//                (1,0), (1,1) as (dy, dx), zero for a corner off the frame). Same float arithmetic as the
//                reference, so the weights are bit-identical.
// apply(input, cell, weight, y0, y1)  input N x C x H x W (contiguous or channels_last) -> output rows
//                y0 .. y1-1, N x C x (y1-y0) x W in the input's memory format.
//
// backward_input, backward_flow  the gradients of apply w.r.t. its input and the flow (floor held constant).
//
// Deterministic and independent of the thread count, no atomics: in apply a thread owns a band of output rows and
// visits the source pixels in order, so every target receives its contributions in source order; the backward
// kernels write one source pixel's gradients at a time.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int32_t kNoCorner = INT32_MIN;

// Where source pixel (x, y) moved by (fx, fy) lands: its top-left target cell and per-axis bilinear weights, the
// arithmetic of the reference (softsplat._cells_and_weights) step for step. Corner (dy, dx) weighs
// weight_x[dx] * weight_y[dy]; a neighbour off the frame has mask 0 and weight 0. `on_frame` is false when no
// corner lands on the frame (NaN compares false, so non-finite targets too).
template <typename scalar_t>
struct Bilinear {
  bool on_frame;
  int64_t x0, y0;
  scalar_t mask_x[2], mask_y[2], weight_x[2], weight_y[2];

  Bilinear(int64_t x, int64_t y, scalar_t fx, scalar_t fy, int64_t w, int64_t h) {
    const scalar_t tx = static_cast<scalar_t>(x) + fx, ty = static_cast<scalar_t>(y) + fy;
    const scalar_t floor_x = std::floor(tx), floor_y = std::floor(ty);
    on_frame = floor_x >= -1 && floor_x <= w - 1 && floor_y >= -1 && floor_y <= h - 1;
    if (!on_frame) return;
    x0 = static_cast<int64_t>(floor_x);
    y0 = static_cast<int64_t>(floor_y);
    const scalar_t ax = tx - floor_x, ay = ty - floor_y;
    mask_x[0] = x0 >= 0; mask_x[1] = x0 < w - 1;
    mask_y[0] = y0 >= 0; mask_y[1] = y0 < h - 1;
    weight_x[0] = (1 - ax) * mask_x[0]; weight_x[1] = ax * mask_x[1];
    weight_y[0] = (1 - ay) * mask_y[0]; weight_y[1] = ay * mask_y[1];
  }
};

template <typename scalar_t>
void prepare_kernel(const at::Tensor& flow, at::Tensor& cell, at::Tensor& weight) {
  const int64_t n = flow.size(0), h = flow.size(2), w = flow.size(3);
  const auto flow_a = flow.accessor<scalar_t, 4>();
  int32_t* cell_p = cell.data_ptr<int32_t>();
  scalar_t* weight_p = weight.data_ptr<scalar_t>();
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / h, y = row % h;
      for (int64_t x = 0; x < w; ++x) {
        const int64_t p = row * w + x;
        const Bilinear<scalar_t> target(x, y, flow_a[b][0][y][x], flow_a[b][1][y][x], w, h);
        if (!target.on_frame) {
          cell_p[2 * p] = 0;
          cell_p[2 * p + 1] = kNoCorner;
          for (int k = 0; k < 4; ++k) weight_p[4 * p + k] = 0;
          continue;
        }
        cell_p[2 * p] = static_cast<int32_t>(target.x0);
        cell_p[2 * p + 1] = static_cast<int32_t>(target.y0);
        for (int k = 0; k < 4; ++k) weight_p[4 * p + k] = target.weight_x[k & 1] * target.weight_y[k >> 1];
      }
    }
  });
}

// Adds every source pixel of image `b` whose corners reach output rows [band0, band1) to them, in source order.
// Input and output are channels-last (channels contiguous per pixel: a vectorizable inner loop). kChannels > 0
// fixes the channel count at compile time (for the narrow images and normalisers, whose loop overhead
// dominates; 1.2-2x faster there); 0: runtime `c` (vectorized, what wide features need).
template <typename scalar_t, int kChannels>
void splat_band(const scalar_t* __restrict__ in, const int32_t* __restrict__ cell,
                const scalar_t* __restrict__ weight, scalar_t* __restrict__ out, int64_t b, int64_t runtime_c,
                int64_t h, int64_t w, int64_t y0, int64_t y1, int64_t band0, int64_t band1) {
  const int64_t c = kChannels > 0 ? kChannels : runtime_c;
  const int64_t hw = h * w, rows = y1 - y0;
  const scalar_t* image_in = in + b * hw * c;
  scalar_t* image_out = out + b * rows * w * c;
  for (int64_t q = 0; q < hw; ++q) {
    const int64_t p = b * hw + q, cx = cell[2 * p], cy = cell[2 * p + 1];
    if (cy == kNoCorner || cy + 1 < band0 || cy >= band1) continue;
    for (int k = 0; k < 4; ++k) {
      const int64_t tx = cx + (k & 1), ty = cy + (k >> 1);
      if (tx < 0 || tx >= w || ty < band0 || ty >= band1) continue;
      const scalar_t wk = weight[4 * p + k];
      const scalar_t* __restrict__ source = image_in + q * c;
      scalar_t* __restrict__ dest = image_out + ((ty - y0) * w + tx) * c;
      for (int64_t ch = 0; ch < c; ++ch) dest[ch] += wk * source[ch];
    }
  }
}

// Tasks are (image, band of output rows): each scans all source pixels of its image and adds those landing in
// its band, so every target still receives its contributions in source order whatever the number of bands.
template <typename scalar_t>
void apply_kernel(const at::Tensor& input, const at::Tensor& cell, const at::Tensor& weight, int64_t y0,
                  int64_t y1, at::Tensor& output) {
  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t bands = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), y1 - y0));
  const scalar_t* in = input.data_ptr<scalar_t>();
  scalar_t* out = output.data_ptr<scalar_t>();
  const int32_t* cell_p = cell.data_ptr<int32_t>();
  const scalar_t* weight_p = weight.data_ptr<scalar_t>();
  at::parallel_for(0, n * bands, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / bands, band = task % bands;
      const int64_t band0 = y0 + (y1 - y0) * band / bands, band1 = y0 + (y1 - y0) * (band + 1) / bands;
      switch (c) {
        case 1: splat_band<scalar_t, 1>(in, cell_p, weight_p, out, b, c, h, w, y0, y1, band0, band1); break;
        case 3: splat_band<scalar_t, 3>(in, cell_p, weight_p, out, b, c, h, w, y0, y1, band0, band1); break;
        default: splat_band<scalar_t, 0>(in, cell_p, weight_p, out, b, c, h, w, y0, y1, band0, band1);
      }
    }
  });
}

// Gradient w.r.t. the input: every source pixel gathers its on-frame corners' output gradients (rows y0 .. y1-1),
// weighted, corner by corner. Each task owns whole source rows: deterministic.
template <typename scalar_t>
void backward_input_kernel(const at::Tensor& grad_output, const at::Tensor& cell, const at::Tensor& weight,
                           int64_t h, int64_t y0, at::Tensor& grad_input) {
  const int64_t n = grad_output.size(0), c = grad_output.size(1), rows = grad_output.size(2);
  const int64_t w = grad_output.size(3), y1 = y0 + rows;
  const scalar_t* g = grad_output.data_ptr<scalar_t>();
  scalar_t* gi = grad_input.data_ptr<scalar_t>();
  const int32_t* cell_p = cell.data_ptr<int32_t>();
  const scalar_t* weight_p = weight.data_ptr<scalar_t>();
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t source_row = begin; source_row < end; ++source_row) {
      const int64_t b = source_row / h;
      for (int64_t p = source_row * w; p < (source_row + 1) * w; ++p) {
        const int64_t cx = cell_p[2 * p], cy = cell_p[2 * p + 1];
        if (cy == kNoCorner || cy + 1 < y0 || cy >= y1) continue;
        for (int k = 0; k < 4; ++k) {
          const int64_t tx = cx + (k & 1), ty = cy + (k >> 1);
          if (tx < 0 || tx >= w || ty < y0 || ty >= y1) continue;
          const scalar_t wk = weight_p[4 * p + k];
          const scalar_t* __restrict__ source = g + (b * rows * w + (ty - y0) * w + tx) * c;
          scalar_t* __restrict__ dest = gi + p * c;
          for (int64_t ch = 0; ch < c; ++ch) dest[ch] += wk * source[ch];
        }
      }
    }
  });
}

// Gradient w.r.t. the flow: the derivative of the bilinear weights with floor(X), floor(Y) held constant, times the
// dot product of the source pixel's input and each on-frame corner's output gradient. Per source pixel: no races.
template <typename scalar_t>
void backward_flow_kernel(const at::Tensor& input, const at::Tensor& flow, const at::Tensor& grad_output,
                          int64_t y0, at::Tensor& grad_flow) {
  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t rows = grad_output.size(2), hw = h * w, y1 = y0 + rows;
  const scalar_t* in = input.data_ptr<scalar_t>();
  const scalar_t* g = grad_output.data_ptr<scalar_t>();
  const auto flow_a = flow.accessor<scalar_t, 4>();
  auto grad_a = grad_flow.accessor<scalar_t, 4>();
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t source_row = begin; source_row < end; ++source_row) {
      const int64_t b = source_row / h, y = source_row % h;
      for (int64_t x = 0; x < w; ++x) {
        const int64_t q = y * w + x;
        const Bilinear<scalar_t> t(x, y, flow_a[b][0][y][x], flow_a[b][1][y][x], w, h);
        scalar_t gx = 0, gy = 0;
        if (t.on_frame) {
          // the per-axis factors of d weight / d flow: d weight_x[dx] / d fx = +-mask_x[dx], likewise for y; local
          // arrays, not the struct's (reading those in the loop made 16-channel gradients ~12% slower)
          const scalar_t slope_x[2] = {-t.mask_x[0], t.mask_x[1]}, slope_y[2] = {-t.mask_y[0], t.mask_y[1]};
          const scalar_t weight_x[2] = {t.weight_x[0], t.weight_x[1]}, weight_y[2] = {t.weight_y[0], t.weight_y[1]};
          for (int k = 0; k < 4; ++k) {
            const int dx = k & 1, dy = k >> 1;
            const int64_t tx = t.x0 + dx, ty = t.y0 + dy;
            if (tx < 0 || tx >= w || ty < y0 || ty >= y1) continue;
            const scalar_t* __restrict__ source = in + (b * hw + q) * c;
            const scalar_t* __restrict__ grad = g + (b * rows * w + (ty - y0) * w + tx) * c;
            scalar_t dot = 0;
            for (int64_t ch = 0; ch < c; ++ch) dot += source[ch] * grad[ch];
            gx += slope_x[dx] * weight_y[dy] * dot;
            gy += weight_x[dx] * slope_y[dy] * dot;
          }
        }
        grad_a[b][0][y][x] = gx;
        grad_a[b][1][y][x] = gy;
      }
    }
  });
}

}  // namespace

// The kernels read and write channels-last memory (a contiguous tensor is converted on the way in and the output
// on the way out, as the reference gathers from an N*H*W x C table); C = 1 is the same memory in both layouts.
static at::MemoryFormat format_of(const at::Tensor& tensor) {
  return tensor.is_contiguous(at::MemoryFormat::ChannelsLast) && !tensor.is_contiguous()
             ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

static at::Tensor channels_last_zeros(const at::Tensor& like, int64_t rows) {
  at::Tensor zeros = at::empty({like.size(0), like.size(1), rows, like.size(3)}, like.options(),
                               at::MemoryFormat::ChannelsLast);
  return zeros.zero_();
}

std::vector<at::Tensor> prepare(const at::Tensor& flow) {
  TORCH_CHECK(flow.device().is_cpu(), "splat_cpu: flow must be on the CPU");
  TORCH_CHECK(flow.dim() == 4 && flow.size(1) == 2, "splat_cpu: flow must be N x 2 x H x W");
  const int64_t pixels = flow.size(0) * flow.size(2) * flow.size(3);
  TORCH_CHECK(flow.size(2) < INT32_MAX / 2 && flow.size(3) < INT32_MAX / 2, "splat_cpu: flow too large");
  at::Tensor cell = at::empty({pixels, 2}, flow.options().dtype(at::kInt));
  at::Tensor weight = at::empty({pixels, 4}, flow.options());
  AT_DISPATCH_FLOATING_TYPES(flow.scalar_type(), "splat_cpu_prepare", [&] {
    prepare_kernel<scalar_t>(flow, cell, weight);
  });
  return {cell, weight};
}

at::Tensor apply(const at::Tensor& input, const at::Tensor& cell, const at::Tensor& weight, int64_t y0,
                 int64_t y1) {
  TORCH_CHECK(input.device().is_cpu() && input.dim() == 4, "splat_cpu: input must be N x C x H x W on the CPU");
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), "splat_cpu: input and weights differ in dtype");
  TORCH_CHECK(cell.size(0) == input.size(0) * input.size(2) * input.size(3), "splat_cpu: input and flow differ");
  TORCH_CHECK(0 <= y0 && y0 <= y1 && y1 <= input.size(2), "splat_cpu: bad row range");
  const at::Tensor source = input.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor output = channels_last_zeros(input, y1 - y0);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_cpu_apply", [&] {
    apply_kernel<scalar_t>(source, cell.contiguous(), weight.contiguous(), y0, y1, output);
  });
  return output.contiguous(format_of(input));
}

at::Tensor backward_input(const at::Tensor& grad_output, const at::Tensor& cell, const at::Tensor& weight,
                          int64_t h, int64_t y0) {
  TORCH_CHECK(grad_output.device().is_cpu() && grad_output.dim() == 4, "splat_cpu: bad output gradient");
  TORCH_CHECK(grad_output.scalar_type() == weight.scalar_type(), "splat_cpu: gradient and weights differ in dtype");
  TORCH_CHECK(cell.size(0) == grad_output.size(0) * h * grad_output.size(3), "splat_cpu: gradient and flow differ");
  const at::Tensor grad = grad_output.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor grad_input = channels_last_zeros(grad, h);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "splat_cpu_backward_input", [&] {
    backward_input_kernel<scalar_t>(grad, cell.contiguous(), weight.contiguous(), h, y0, grad_input);
  });
  return grad_input;
}

at::Tensor backward_flow(const at::Tensor& input, const at::Tensor& flow, const at::Tensor& grad_output,
                         int64_t y0) {
  TORCH_CHECK(input.device().is_cpu() && input.dim() == 4 && flow.dim() == 4, "splat_cpu: bad input or flow");
  TORCH_CHECK(input.scalar_type() == flow.scalar_type() && input.scalar_type() == grad_output.scalar_type(),
              "splat_cpu: input, flow and gradient differ in dtype");
  const at::Tensor source = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor grad = grad_output.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor grad_flow = at::empty_like(flow, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_cpu_backward_flow", [&] {
    backward_flow_kernel<scalar_t>(source, flow, grad, y0, grad_flow);
  });
  return grad_flow;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("prepare", &prepare, "corner cells and weights of a flow (see splat_cpu.cpp)");
  m.def("apply", &apply, "summation splat of an input by prepared cells and weights, output rows y0..y1-1");
  m.def("backward_input", &backward_input, "gradient of apply w.r.t. its input");
  m.def("backward_flow", &backward_flow, "gradient of apply w.r.t. the flow (floor held constant)");
}
