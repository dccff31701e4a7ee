// Summation splatting on the CPU, for inference (no backward): the semantics of core/ops/softsplat.py.
//
// prepare(flow)  flow N x 2 x H x W (pixels, x first) -> (cell N*H*W x 2 int32 (x0, y0) of the top-left target,
//                y0 = INT32_MIN if no corner lands on the frame; weight N*H*W x 4 of the corners (0,0), (0,1),
//                (1,0), (1,1) as (dy, dx), zero for a corner off the frame). Same float arithmetic as the
//                reference, so the weights are bit-identical.
// apply(input, cell, weight, y0, y1)  input N x C x H x W (contiguous or channels_last) -> output rows
//                y0 .. y1-1, N x C x (y1-y0) x W in the input's memory format.
//
// Deterministic and independent of the thread count: a thread owns a band of output rows and visits the source
// pixels in order, so every target receives its contributions in source order; no atomics.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int32_t kNoCorner = INT32_MIN;

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
        const scalar_t fx = flow_a[b][0][y][x], fy = flow_a[b][1][y][x];
        const scalar_t tx = static_cast<scalar_t>(x) + fx, ty = static_cast<scalar_t>(y) + fy;
        const scalar_t x0 = std::floor(tx), y0 = std::floor(ty);
        // no corner on the frame (NaN compares false, so non-finite targets land here too)
        if (!(x0 >= -1 && x0 <= w - 1 && y0 >= -1 && y0 <= h - 1)) {
          cell_p[2 * p] = 0;
          cell_p[2 * p + 1] = kNoCorner;
          for (int k = 0; k < 4; ++k) weight_p[4 * p + k] = 0;
          continue;
        }
        const scalar_t ax = tx - x0, ay = ty - y0;
        const scalar_t left = (1 - ax) * (x0 >= 0), right = ax * (x0 < w - 1);
        const scalar_t top = (1 - ay) * (y0 >= 0), bottom = ay * (y0 < h - 1);
        cell_p[2 * p] = static_cast<int32_t>(x0);
        cell_p[2 * p + 1] = static_cast<int32_t>(y0);
        weight_p[4 * p + 0] = left * top;
        weight_p[4 * p + 1] = right * top;
        weight_p[4 * p + 2] = left * bottom;
        weight_p[4 * p + 3] = right * bottom;
      }
    }
  });
}

// Adds every source pixel of image `b` whose corners reach output rows [band0, band1) to them, in source order.
// `kChannelsLast`: channels are contiguous per pixel (vectorizable inner loop); otherwise planes of h*w / rows*w.
template <typename scalar_t, bool kChannelsLast>
void splat_band(const scalar_t* __restrict__ in, const int32_t* __restrict__ cell,
                const scalar_t* __restrict__ weight, scalar_t* __restrict__ out, int64_t b, int64_t c, int64_t h,
                int64_t w, int64_t y0, int64_t y1, int64_t band0, int64_t band1) {
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
      const int64_t target = (ty - y0) * w + tx;
      if (kChannelsLast) {
        const scalar_t* __restrict__ source = image_in + q * c;
        scalar_t* __restrict__ dest = image_out + target * c;
        for (int64_t ch = 0; ch < c; ++ch) dest[ch] += wk * source[ch];
      } else {
        for (int64_t ch = 0; ch < c; ++ch) image_out[ch * rows * w + target] += wk * image_in[ch * hw + q];
      }
    }
  }
}

// Tasks are (image, band of output rows): each scans all source pixels of its image and adds those landing in
// its band, so every target still receives its contributions in source order whatever the number of bands.
template <typename scalar_t>
void apply_kernel(const at::Tensor& input, const at::Tensor& cell, const at::Tensor& weight, int64_t y0,
                  int64_t y1, at::Tensor& output, bool channels_last) {
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
      if (channels_last) {
        splat_band<scalar_t, true>(in, cell_p, weight_p, out, b, c, h, w, y0, y1, band0, band1);
      } else {
        splat_band<scalar_t, false>(in, cell_p, weight_p, out, b, c, h, w, y0, y1, band0, band1);
      }
    }
  });
}

}  // namespace

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
  const bool channels_last = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous();
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor source = input.contiguous(format);
  at::Tensor output = at::empty({input.size(0), input.size(1), y1 - y0, input.size(3)}, input.options(), format);
  output.zero_();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_cpu_apply", [&] {
    apply_kernel<scalar_t>(source, cell.contiguous(), weight.contiguous(), y0, y1, output, channels_last);
  });
  return output;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("prepare", &prepare, "corner cells and weights of a flow (see splat_cpu.cpp)");
  m.def("apply", &apply, "summation splat of an input by prepared cells and weights, output rows y0..y1-1");
}
