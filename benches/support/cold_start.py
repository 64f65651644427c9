"""Cold start and idle memory of a server: starts COMMAND, polls URL every millisecond until
it answers 200, stops the server; repeats, and prints the best time and the idle resident
memory of the process tree (after a 1 s settle, from the last start).

    python3 cold_start.py ROUNDS URL -- COMMAND...      # environment passes through
Prints: COLD <best ms> <median ms> RSS <KiB>
Each round gets a fresh empty directory in $SQLITE_STORE_DIR when COLD_FRESH_DIR=1.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def tree_rss_kib(pid: int) -> int:
    """Resident memory of pid and its descendants, in KiB."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return total


def ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def main() -> None:
    rounds, url = int(sys.argv[1]), sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    times, rss = [], 0
    for i in range(rounds):
        env = dict(os.environ)
        fresh = None
        if os.environ.get("COLD_FRESH_DIR") == "1":
            fresh = tempfile.mkdtemp(prefix="cold-start-")
            env["SQLITE_STORE_DIR"] = fresh
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not ok(url):
            if proc.poll() is not None:
                sys.exit(f"server exited with {proc.returncode} before answering")
            if time.perf_counter() - t0 > 120:
                proc.kill()
                sys.exit("server did not answer within 120 s")
            time.sleep(0.001)
        times.append((time.perf_counter() - t0) * 1000)
        if i == rounds - 1:
            time.sleep(1)
            rss = tree_rss_kib(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if fresh:
            shutil.rmtree(fresh, ignore_errors=True)
    times.sort()
    print(f"COLD {times[0]:.1f} {times[len(times) // 2]:.1f} RSS {rss}")


if __name__ == "__main__":
    main()
