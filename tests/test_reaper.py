"""The reaper: once a driver is killed, the processes it started, and theirs, are stopped."""

import subprocess
import sys
import threading
import time

import psutil

from ray_jobs import reaper

#: A "driver" that starts a service which starts an agent of its own, then waits.
DRIVER = """
import subprocess, sys, time
service = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"])
print(service.pid, flush=True)
time.sleep(300)
"""


def test_what_a_killed_driver_started_is_killed_and_nothing_else(monkeypatch):
    monkeypatch.setattr(reaper, "POLL_SECONDS", 0.1)
    bystander = subprocess.Popen(["sleep", "300"])
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    service = psutil.Process(int(driver.stdout.readline()))
    watching = threading.Thread(target=reaper.reap, args=(driver.pid, [service.pid]))
    watching.start()
    while not service.children():
        time.sleep(0.05)
    agent = service.children()[0]
    time.sleep(0.3)  # the reaper has seen the agent
    driver.kill()
    watching.join(timeout=10)
    psutil.wait_procs([service, agent], timeout=10)  # a killed process takes a moment to go
    assert not reaper.alive(service) and not reaper.alive(agent)
    assert bystander.poll() is None
    bystander.kill()
    driver.wait()
