#!/usr/bin/env bash
# What the skip of an unchanged terraform_root saves: `pipe deploy` of a
# root module nothing changed in (no terraform process) against
# `pipe deploy --force` of the same (init check, plan, show; the plan is
# empty so nothing is applied). The root uses only built-in resources
# (terraform_data, a local module, outputs), so no provider is involved.
# Runs are interleaved so load on the machine hits both alike; prints the
# medians.
#
#   bash bench/terraform.sh PIPE TOFU [RUNS]
set -euo pipefail
pipe=$(realpath "$1") tofu=$(realpath "$2") runs=${3:-11}
ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT
mkdir -p "$ws/modules/greet" "$ws/infra"
cat > "$ws/WORKSPACE.star" <<EOT
workspace(name = "bench", terraform = "$tofu")
EOT
echo 'terraform_module(name = "greet", srcs = glob(["*.tf"]))' > "$ws/modules/greet/BUILD.star"
cat > "$ws/modules/greet/main.tf" <<'EOT'
variable "name" {
  type = string
}

output "text" {
  value = "hello, ${var.name}"
}
EOT
cat > "$ws/infra/BUILD.star" <<'EOT'
terraform_root(name = "infra", srcs = glob(["*.tf"]), deps = ["//modules/greet"])
EOT
{
  echo 'module "greet" {'
  echo '  source = "../modules/greet"'
  echo '  name   = "bench"'
  echo '}'
  for i in $(seq 20); do
    printf '\nresource "terraform_data" "r%d" {\n  input = %d\n}\n' "$i" "$i"
  done
  printf '\noutput "greeting" {\n  value = module.greet.text\n}\n'
} > "$ws/infra/main.tf"
export PIPE_CACHE_DIR="$ws/.cache"
run() { (cd "$ws" && "$pipe" deploy "$@" >/dev/null 2>&1); }
run                      # first apply
run; run --force; run    # warm up both paths
declare -A times
for i in $(seq "$runs"); do
  for mode in skip force; do
    args=()
    [ "$mode" = force ] && args=(--force)
    s=$(date +%s%N); run "${args[@]}"; e=$(date +%s%N)
    times[$mode]+="$(( (e - s) / 1000000 )) "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "pipe deploy, nothing changed (skip):   median $(median "${times[skip]}") ms over $runs runs"
echo "pipe deploy --force (init, plan, show): median $(median "${times[force]}") ms over $runs runs"
