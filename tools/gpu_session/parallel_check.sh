#!/bin/bash
# Two BSSE trainings side by side on one GPU with torch's CPU threads capped (OMP_NUM_THREADS), to
# tell CPU oversubscription from GPU time-slicing between processes (session 15: three runs side by
# side each ran ~10x slower than one alone). Prints each run's training rate.
set -u
source tools/gpu_session/common.sh
THREADS=${THREADS:-4}; EPOCHS=${EPOCHS:-3}
export OMP_NUM_THREADS=$THREADS
one() {
  timeout 150 python3 train.py hparams/bsse.yaml $CARRY_DATA --feature=spectrum \
    --valid_pairs=8 --test_pairs=2 --test_metrics=[stoi] --metric_jobs=1 --proj_size=256 --hidden_size=256 \
    --number_of_epochs=$EPOCHS --layer_analysis=False --num_workers=2 --data_folder=/tmp/d_$1 --output_folder=/tmp/par_$1 > $OUT/par_$1.txt 2>&1
  echo "run $1 rc=$? last rates: $(tr '\r' '\n' < $OUT/par_$1.txt | grep -E '/24 .*(it/s|s/it)' | tail -3 | grep -oE '[0-9.]+(it/s|s/it)' | tr '\n' ' ')"
}
one a & one b & wait
