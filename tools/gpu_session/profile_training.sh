#!/bin/bash
# Why training on a lent GPU ran at CPU speed (session 15: BSSE ~1 s/update, the vocoder ~1.3 s/update
# on an H200, three runs sharing the machine): each recipe ALONE for a few updates under cProfile,
# with the GPU's utilisation sampled every second and a `top` snapshot mid-run.
#   bash tools/gpu_session/profile_training.sh                      # on the device
#   OUT=/tmp/out DEV=cpu UPD=3 bash tools/gpu_session/profile_training.sh   # dry run here
set -u
source tools/gpu_session/common.sh
UPD=${UPD:-20}; STEP_S=${STEP_S:-110}
command -v nvidia-smi >/dev/null && { nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > $OUT/gpu_util.csv 2>&1 & }
python3 -c "import torch; print('threads', torch.get_num_threads(), 'cudnn', torch.backends.cudnn.is_available(), torch.backends.cudnn.enabled)" | tee $OUT/env.txt
# The mask network's compute alone (a 2-layer BLSTM 256 as BSSE's, batch 16 x 1.28 s), no data path.
python3 - <<'PY' 2>&1 | tee -a $OUT/env.txt
import time, torch
dev = "cuda" if torch.cuda.is_available() else "cpu"
lstm = torch.nn.LSTM(256, 256, 2, batch_first=True, bidirectional=True).to(dev)
x = torch.randn(16, 129, 256, device=dev)
for i in range(25):
    if i == 5:
        torch.cuda.synchronize() if dev == "cuda" else None; t = time.time()
    lstm(x)[0].sum().backward()
torch.cuda.synchronize() if dev == "cuda" else None
print(f"BLSTM fwd+bwd on {dev}: {(time.time() - t) / 20 * 1000:.1f} ms/step")
PY
DATA="$CARRY_DATA --valid_pairs=8 --test_pairs=2 --test_metrics=[stoi] --metric_jobs=1"
profile() {  # name, recipe, args...
  local name=$1; shift
  (sleep 45; top -b -n 1 -w 200 | head -25 > $OUT/top_$name.txt) &
  timeout -s INT -k 15 $STEP_S python3 -m cProfile -o /tmp/$name.prof train.py "$@" $DATA --data_folder=/tmp/d_$name \
    --output_folder=/tmp/p_$name > $OUT/$name.txt 2>&1; stamp "$name rc=$?"
  python3 -c "import pstats,sys; p=pstats.Stats('/tmp/$name.prof', stream=sys.stdout); p.sort_stats('tottime').print_stats(25); p.sort_stats('cumulative').print_stats(40)" > $OUT/prof_$name.txt 2>&1
}
profile bsse hparams/bsse.yaml --feature=spectrum --proj_size=256 --hidden_size=256 --number_of_epochs=2 \
  --layer_analysis=False --num_workers=3
profile vocoder hparams/ssl_vocoder.yaml --epoch_updates=$UPD --warmup_epochs=1 --number_of_epochs=2 --batch_size=16 \
  --disc_periods=[2,3,5,7,11] --disc_scales=3 --segment_seconds=0.5 --num_workers=8
stamp "done"; kill %1 2>/dev/null
cd $OUT && tar -cf profile.tar --exclude='*.tar' * && find . -maxdepth 1 -type f ! -name '*.tar' -delete
