#!/bin/bash
# One device call on a lent GPU machine (tools/gpu_session/README.md): the GPU throughput of the
# shipped models (benchmarks/bench_gpu.py; BENCH_S=90 to run it, measured in session 15), then, side
# by side, the SSL vocoder (hparams/ssl_vocoder.yaml, the full HiFi-GAN MPD + MSD) and two BSSE
# enhancers (hparams/bsse.yaml, paper size, spectrum and cross), on the real speech of
# tools/gpu_session/make_carry.py, each with a time budget (--max_train_minutes); their hub folders
# (hub.tar, hub_bsse_<feature>.tar) and the logs (logs.tar) come back in $OUT.
#   bash tools/gpu_session/run_vocoder.sh                     # on the device: CUDA, the defaults below
#   OUT=/tmp/out DEV=cpu FIT_MIN=0.05 BSSE_MIN=0.05 UPD=3 BUPD=3 WARM=1 BFILES=8 BATCH=4 THREADS=1 bash tools/gpu_session/run_vocoder.sh  # dry run here
# Times (seconds) are chosen for one 600 s call: pip ~5, bench <= BENCH_S, training <= TRAIN_S
# (FIT_MIN minutes of fit, at most one epoch more, then the test split and the export).
set -u
source tools/gpu_session/common.sh
FIT_MIN=${FIT_MIN:-7}; BENCH_S=${BENCH_S:-0}; TRAIN_S=${TRAIN_S:-500}
BSSE_MIN=${BSSE_MIN:-7.3}; BUPD=${BUPD:-200}; UPD=${UPD:-300}; WARM=${WARM:-5}; BFILES=${BFILES:-300}; BATCH=${BATCH:-16}
stamp "installed"
(nvidia-smi; python3 -c "import torch, speechbrain, soundfile; print(torch.__version__, speechbrain.__version__, soundfile.__version__, torch.cuda.is_available())") > $OUT/env.txt 2>&1
cat $OUT/env.txt | tail -2
if [ "$BENCH_S" != "0" ]; then  # measured in session 15 (benchmarks/RESULTS.md): off by default
  timeout $BENCH_S python3 benchmarks/bench_gpu.py --folder $CARRY/speech --files $BFILES --device $DEV --batch-sizes 16 64 \
    --json $OUT/bench_gpu.json > $OUT/bench_gpu.txt 2>&1; stamp "bench rc=$?"
  grep "^|" $OUT/bench_gpu.txt
fi
# Side by side, each training process gets 4 torch CPU threads: with torch's default (one per core,
# 16) three runs and their loader workers oversubscribed the 16 cores and each ran ~10x slower than
# alone (session 15: ~1 s per BSSE update against 0.12 s alone; tools/gpu_session/parallel_check.sh).
export OMP_NUM_THREADS=${THREADS:-4}
# Two BSSE enhancers (issue 13) train beside the vocoder on the same GPU (small models; the bench above
# ran alone): the paper's size (proj/hidden 256), spectrum-only and cross (TERA frozen), time-budgeted,
# with the shipped model's noise variation (p 0.8; README, BSSE) so that they compare with it.
bsse() {  # feature
  local B=/tmp/bsse/$1_frozen/1234
  timeout $TRAIN_S python3 train.py hparams/bsse.yaml $CARRY_DATA --feature=$1 \
    --data_folder=/tmp/sqe_data_$1 --valid_pairs=48 --test_pairs=8 --test_metrics=[stoi] --metric_jobs=1 \
    --proj_size=256 --hidden_size=256 --noise_variation_prob=0.8 --number_of_epochs=2000 --epoch_updates=$BUPD --max_train_minutes=$BSSE_MIN --num_workers=3 \
    --layer_analysis=False --output_folder=$B > $OUT/train_bsse_$1.txt 2>&1; stamp "bsse $1 rc=$?"
  cp $B/train_log.txt $OUT/train_log_bsse_$1.txt 2>/dev/null
  # $OUT brings back 8 files of 16 MiB at most: the hub without ssl.ckpt (TERA frozen: the shipped
  # speechbrain_sqe/pretrained/tera/tera.ckpt, same tensors; copy it back as hub/ssl.ckpt).
  [ -d $B/hub ] && tar -C $B -cf $OUT/hub_bsse_$1.tar --exclude=hub/ssl.ckpt --exclude='*.png' hub report/*.txt report/*.csv 2>/dev/null
}
if [ "$BSSE_MIN" != "0" ]; then bsse spectrum & bsse cross & fi
timeout $TRAIN_S python3 train.py hparams/ssl_vocoder.yaml $CARRY_DATA \
  --data_folder=/tmp/sqe_data --valid_pairs=48 --test_pairs=8 --test_metrics=[stoi] --metric_jobs=4 \
  --batch_size=$BATCH --epoch_updates=$UPD --warmup_epochs=$WARM --number_of_epochs=200 --max_train_minutes=$FIT_MIN \
  --disc_periods=[2,3,5,7,11] --disc_scales=3 --segment_seconds=0.5 --num_workers=4 \
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
wait; stamp "done"
# Everything but the hub archives in one file (the device tool brings back at most 8 files).
cd $OUT && tar -cf logs.tar --exclude='*.tar' * && find . -maxdepth 1 -type f ! -name '*.tar' -delete; ls -la $OUT
