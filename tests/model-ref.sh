#!/bin/sh
# model-ref.sh - check_model again with the scalar reference kernels
# (HEARTH_KERNELS=ref), the path a CPU without AVX-512 takes: the same
# forward pass must give llama.cpp's logits, the same greedy tokens
# however the prompt is batched, and the same refusals.
set -eu
HEARTH_KERNELS=ref
export HEARTH_KERNELS
exec "${HEARTH_BUILDDIR:-.}/tests/check_model"
