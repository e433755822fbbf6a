#!/usr/bin/env bash
# lossctl on a GPU, in one prepared run of under 5 minutes (issue 13). Not part of CI.
#
#   benchmarks/gpu.sh                    # on a CUDA machine, from the repository root
#   benchmarks/gpu.sh --dry-run          # print the steps without running them
#   DEVICE=cpu SMALL=1 benchmarks/gpu.sh # the same steps at toy sizes on the CPU: tests the plumbing only
#
# Steps, each under its own time limit (285 s in all) so one slow step cannot take the whole budget:
#   1. the bundled suite: lossctl check configs/*.yaml and lossctl bench configs/*.yaml (single-process: one GPU) on the device
#   2. the chunked linear+cross-entropy at N=8192, D=4096, V=128256 in bfloat16 against
#      F.cross_entropy(h @ w.T): speed, peak memory ratio, % of roofline
#   3. the cross-entropy example at [32768, 128256] in bfloat16 against F.cross_entropy
#   4. lossctl's median against a direct CUDA-event measurement of the same call (target within 5%)
# Output: every step's text and JSON under $OUT (default benchmarks/gpu-out/), and a summary.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE="${DEVICE:-cuda}"
SMALL="${SMALL:-0}"
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --device=*) DEVICE="${arg#--device=}" ;;
    --small) SMALL=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $arg (use --dry-run, --device=DEV, --small)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
LOSSCTL=("$PYTHON" -m lossctl)
OUT="${OUT:-benchmarks/gpu-out}"

if [ "$SMALL" = 1 ]; then
  LCE_DIMS=(--dims N=64 --dims D=16 --dims V=300)
  CE_DIMS=(--dims N=64 --dims C=300)
  AGREE_SIZE=(-N 128 -C 100 --repeats 1 --min-time 0.05)
  TIME=(--min-time 0.01 --max-time 0.1)
else
  LCE_DIMS=(--dims N=8192 --dims D=4096 --dims V=128256)
  CE_DIMS=()  # the spec's own [32768, 128256]
  AGREE_SIZE=(-N 8192 -C 32000 --repeats 3 --min-time 0.5)
  TIME=(--min-time 0.2 --max-time 2)
fi

FAILED=()
step() {  # step NAME LIMIT_S COMMAND...: run it (or print it), its output to $OUT/NAME.txt
  local name="$1" limit="$2"
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  if [ "$DRY_RUN" = 1 ]; then
    return 0
  fi
  local began=$SECONDS rc
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  rc=$?
  cat "$OUT/$name.txt"
  echo "=== $name: exit $rc after $((SECONDS - began))s"
  [ "$rc" = 0 ] || FAILED+=("$name (exit $rc)")
}

if [ "$DRY_RUN" = 0 ]; then
  mkdir -p "$OUT"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')" | tee "$OUT/environment.txt"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee -a "$OUT/environment.txt"
fi

step suite-check 75 "${LOSSCTL[@]}" check configs/*.yaml --device "$DEVICE" -v
step suite-bench 40 "${LOSSCTL[@]}" bench configs/*.yaml --device "$DEVICE" "${TIME[@]}" --save "$OUT/suite-bench.json"
step linear-ce 70 "${LOSSCTL[@]}" bench benchmarks/linear_ce.yaml --device "$DEVICE" --dtype bfloat16 \
  "${LCE_DIMS[@]}" "${TIME[@]}" --save "$OUT/linear-ce.json"
step cross-entropy 60 "${LOSSCTL[@]}" bench benchmarks/cross_entropy_large.yaml --device "$DEVICE" \
  ${CE_DIMS[@]+"${CE_DIMS[@]}"} "${TIME[@]}" --save "$OUT/cross-entropy.json"
step agreement 40 "$PYTHON" benchmarks/gpu_agreement.py --device "$DEVICE" "${AGREE_SIZE[@]}"

if [ "$DRY_RUN" = 1 ]; then
  exit 0
fi
echo "=== summary (device $DEVICE, output in $OUT/)"
if [ "${#FAILED[@]}" = 0 ]; then
  echo "every step exited 0"
else
  printf 'failed: %s\n' "${FAILED[@]}"
  exit 1
fi
