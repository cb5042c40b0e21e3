#!/bin/bash
# One device call on a lent GPU machine (tools/gpu_session/README.md): the GPU throughput of the
# shipped models (benchmarks/bench_gpu.py), then the SSL vocoder (hparams/ssl_vocoder.yaml, real
# speech of tools/gpu_session/make_carry.py, the full HiFi-GAN MPD + MSD) trained with a time budget
# (--max_train_minutes), its hub folder, report and logs written to $OUT (hub.tar).
#   bash tools/gpu_session/run_vocoder.sh                     # on the device: CUDA, the defaults below
#   OUT=/tmp/out DEV=cpu FIT_MIN=0.05 UPD=3 WARM=1 BFILES=8 BATCH=4 bash tools/gpu_session/run_vocoder.sh  # dry run here
# Times (seconds) are chosen for one 600 s call: pip ~15, bench <= BENCH_S, training <= TRAIN_S
# (FIT_MIN minutes of fit, at most one epoch more, then the test split and the export).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
DEV=${DEV:-cuda}; FIT_MIN=${FIT_MIN:-4.8}; BENCH_S=${BENCH_S:-90}; TRAIN_S=${TRAIN_S:-430}
CARRY=${CARRY:-.gpu}; UPD=${UPD:-300}; WARM=${WARM:-5}; BFILES=${BFILES:-300}; BATCH=${BATCH:-16}
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a $OUT/steps.txt; }
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > $OUT/pip.txt 2>&1 || { stamp "pip failed"; tail -5 $OUT/pip.txt; }
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
stamp "installed"
(nvidia-smi; python3 -c "import torch, speechbrain, soundfile; print(torch.__version__, speechbrain.__version__, soundfile.__version__, torch.cuda.is_available())") > $OUT/env.txt 2>&1
cat $OUT/env.txt | tail -2
timeout $BENCH_S python3 benchmarks/bench_gpu.py --folder $CARRY/speech --files $BFILES --device $DEV --batch-sizes 16 64 \
  --json $OUT/bench_gpu.json > $OUT/bench_gpu.txt 2>&1; stamp "bench rc=$?"
grep "^|" $OUT/bench_gpu.txt
timeout $TRAIN_S python3 train.py hparams/ssl_vocoder.yaml --device=$DEV --corpus=manifest \
  --source_folder=$CARRY/speech/manifest.csv --noise_folder=$CARRY/real/splits.csv --rir_folder=$CARRY/real/splits.csv \
  --data_folder=/tmp/sqe_data --valid_pairs=48 --test_pairs=8 --test_metrics=[stoi] --metric_jobs=4 \
  --batch_size=$BATCH --epoch_updates=$UPD --warmup_epochs=$WARM --number_of_epochs=200 --max_train_minutes=$FIT_MIN \
  --disc_periods=[2,3,5,7,11] --disc_scales=3 --segment_seconds=0.5 --num_workers=8 \
  --output_folder=/tmp/voc/cross_attention_log_all/1234 > $OUT/train.txt 2>&1; stamp "train rc=$?"
V=/tmp/voc/cross_attention_log_all/1234
cp $V/train_log.txt $OUT/ 2>/dev/null; tail -c 200000 $V/log.txt > $OUT/log_tail.txt 2>/dev/null
cat $V/train_log.txt 2>/dev/null | cut -c1-300
tail -5 $OUT/train.txt
if [ -d $V/hub ]; then
  tar -C $V -cf $OUT/hub.tar hub report 2>/dev/null; ls -la $OUT/hub.tar
  timeout 60 python3 benchmarks/bench_gpu.py --folder $CARRY/speech --files $BFILES --device $DEV --batch-sizes 16 64 \
    --no-shipped --enhancer ssl_vocoder=$V/hub --json $OUT/bench_gpu_vocoder.json > $OUT/bench_gpu_vocoder.txt 2>&1
  stamp "vocoder bench rc=$?"; grep "^|" $OUT/bench_gpu_vocoder.txt
fi
stamp "done"
