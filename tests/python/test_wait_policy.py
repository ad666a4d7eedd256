"""The `bitttt` command's OpenMP wait policy (src/cli/wait_policy.hpp): a policy the user sets is
kept; otherwise passive when the 1-minute load average is at least half the CPUs, libgomp's
default below. `bitttt bench --json` reports the policy it ran with."""
import json
import os
import subprocess


def bench_policy(cli, env):
    r = subprocess.run([str(cli), "bench", "membw", "--quick", "--json", "-t", "1"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[0])["omp_wait"]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra)
    return env


def test_user_policy_is_kept(bitttt_cli):
    assert bench_policy(bitttt_cli, clean_env(OMP_WAIT_POLICY="active")) == "active"
    assert bench_policy(bitttt_cli, clean_env(OMP_WAIT_POLICY="passive")) == "passive"
    assert bench_policy(bitttt_cli, clean_env(GOMP_SPINCOUNT="1000")) == "GOMP_SPINCOUNT=1000"


def test_policy_follows_the_load(bitttt_cli):
    threshold = 0.5 * os.cpu_count()
    before = os.getloadavg()[0]
    policy = bench_policy(bitttt_cli, clean_env())
    after = os.getloadavg()[0]
    if min(before, after) >= threshold * 1.2:
        assert policy == "passive"
    elif max(before, after) < threshold * 0.8:
        assert policy == "default (spin)"
    else:  # too close to the threshold to tell which side the command saw
        assert policy in ("passive", "default (spin)")
