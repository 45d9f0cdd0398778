import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/__init__.py: avoids 30x slowdowns under load
