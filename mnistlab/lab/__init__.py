"""The lab: parameter files, executing notebooks on Dask, the up-to-date cache, the report and its site.

Needs the ``lab`` extra (papermill, nbconvert, pandas, seaborn, dask). The core (``mnistlab``:
config, data, models, train, records, backprop) needs only torch and never imports this.
"""
