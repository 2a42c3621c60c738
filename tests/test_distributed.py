"""``--distribute multiworker`` for real: two MultiWorkerMirroredStrategy workers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT

from tumor_ai.model.folder import load_model

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_train_one_epoch_and_the_chief_saves(dataset_dir, tmp_path):
    root, _ = dataset_dir
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    out = tmp_path / "model"
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        command = [
            sys.executable,
            "-m",
            "training.train",
            "--model",
            "cnn",
            "--distribute",
            "multiworker",
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--data",
            str(root),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / f"cache{index}"),  # each machine has its own disk
        ]
        processes.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"worker {index} failed:\n{output[-3000:]}"
    assert "saved" in outputs[0] and "the chief writes the model" in outputs[1]
    assert "epoch 1/1: loss" in outputs[0] and "epoch 1/1: loss" in outputs[1], "both workers trained"
    model, metadata = load_model(out)
    assert metadata.training.distribute == "multiworker"
    assert model.count_params() > 0
