"""Validation campaigns: grids of seeded traverses, flown serially or on Dask, and their report.

:mod:`campaign.traverse` is the traverse harness (the flight navigation software against a
seeded world, scored from the truth); :mod:`campaign.grid` names the runs, :mod:`campaign.runner`
flies them into a resumable results file, :mod:`campaign.report` writes the tables and plots, and
:mod:`campaign.cli` is ``magpie campaign``.
"""

from campaign.grid import Grid, GridError, RunSpec
from campaign.runner import CampaignError, execute, run_campaign

__all__ = ["CampaignError", "Grid", "GridError", "RunSpec", "execute", "run_campaign"]
