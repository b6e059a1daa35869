#!/usr/bin/env bash
# The benchmarks on a GPU host, each in its own process, outputs to $1 (default: .).
#
#   bash benchmarks/gpu.sh OUTDIR
#
# JAX's default backend there is the GPU and the PyTorch peers run on it too (harness.py); the
# CPU-only peers (faiss, scikit-learn) get every host core. timeseries_step is left out: its
# data layer (tensorflow-datasets, grain, aeon) is not on the GPU image.
set -uo pipefail
out="${1:-.}"
cd "$(dirname "$0")"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and PyTorch share the card
nvidia-smi -L
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
# name:seconds, most wanted first; each is cut off at its limit so the rest still run.
# BENCHES overrides the list, e.g. BENCHES="vq_step:150 gumbel_step:60".
for entry in ${BENCHES:-vq_step:150 gumbel_step:60 precision:50 large_codebook:80 \
                        kmeans_fit:80 device_parity:100}; do
  b="${entry%%:*}"
  echo "=== $b"
  PYTHONUNBUFFERED=1 timeout "${entry##*:}" python3 "$b.py" >"$out/$b.txt" 2>&1
  echo "rc=$?"; grep -v '^JSON' "$out/$b.txt" | tail -40
done
