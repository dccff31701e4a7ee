# The paper's recipe for UPR-Net LARGE: the base recipe (configs/upr_base.py) with the LARGE widths. Named after
# the official upr_llarge.pkl (configs/upr_LARGE.py, its old name, still works with tools.train --config).
import os as _os
import runpy as _runpy

globals().update({k: v for k, v in _runpy.run_path(_os.path.join(_os.path.dirname(__file__), "upr_base.py")).items()
                  if not k.startswith("_")})
model_size = "LARGE"
