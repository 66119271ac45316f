"""The lab: parameter files, executing notebooks on Dask, the up-to-date cache, the report and its site, and
what the notebooks lean on (the statistics, the claims, the figures, backprop by hand).

Needs the ``lab`` extra (papermill, nbconvert, pandas, seaborn, dask), but for ``backprop``, which needs only
torch. The core (``mnistlab``: config, data, models, train, records) needs only torch and never imports this.
"""
