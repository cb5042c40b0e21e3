# Sourced by this folder's device-call scripts: $OUT, the device, the wheels of .whl installed
# (tools/gpu_session/README.md), a timestamped step log, and the recipes' data arguments for the
# carry of make_carry.py (real speech, noises and rooms).
OUT=${OUT:-/tmp/out}; mkdir -p $OUT; DEV=${DEV:-cuda}; CARRY=${CARRY:-.gpu}
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a $OUT/steps.txt; }
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > $OUT/pip.txt 2>&1 || { stamp "pip failed"; tail -5 $OUT/pip.txt; }
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
CARRY_DATA="--device=$DEV --corpus=manifest --source_folder=$CARRY/speech/manifest.csv \
  --noise_folder=$CARRY/real/splits.csv --rir_folder=$CARRY/real/splits.csv"
