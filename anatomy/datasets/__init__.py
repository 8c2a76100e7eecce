"""The study's datasets: where each comes from (registry.py), how it is fetched and verified (fetch.py for
plain HTTP, hub.py for Hugging Face, roboflow.py for RF100-VL), and which reader ingests it (inputs.py).

`anatomy data fetch` / `anatomy data list` / `make data` are the user's side (cli.py). Nothing here imports
the network libraries at module import time.
"""
