#pragma once
// The roofline's figures for a device backend (one whose memory the host cannot read, a GPU):
// its copy bandwidth measured through the backend itself, and the dense bf16 peak of known
// GPUs for the prefill's compute roofline.
#include <cstddef>
#include <string>

#include "kernels/backend.h"

namespace dsrt::apps {

// Device-to-device copy bandwidth in GB/s, counting the bytes read and the bytes written (as
// NVIDIA's bandwidthTest does): best of `passes` timed copies of a `bytes` buffer after one
// untimed copy. 0 when the backend cannot allocate two such buffers.
double measure_device_copy_gbps(kernels::backend& b, std::size_t bytes, int passes = 5);

// Dense bf16 tensor-core peak in TFLOP/s from the device name in caps().detail (NVIDIA's data
// sheets: H100/H200 SXM 989, H100 PCIe 756, A100 312); 0 for a device not in the table.
double known_bf16_peak_tflops(const std::string& device_detail);

}  // namespace dsrt::apps
