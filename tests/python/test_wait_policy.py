"""The `bitttt` command's OpenMP wait policy (src/cli/wait_policy.hpp): a policy the user sets is
kept; otherwise passive (the forward's thread team spins at its own barrier). `bitttt bench
--json` reports the policy it ran with."""
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


def test_default_policy_is_passive(bitttt_cli):
    assert bench_policy(bitttt_cli, clean_env()) == "passive"
