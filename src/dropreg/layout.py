"""Where a preset's files live: one place for every path the Snakefile and the jobs agree on.

    results/<preset>/runs/<study>/<run>/        a final run (summary.json, last.ckpt, metrics.csv)
    results/<preset>/tuning/<study>/<run>/      a tuning run
    results/<preset>/packs/<study>/<pack>.json  a pack's spec (written by the plan job)
    results/<preset>/<study>/selected.yaml      what tuning selected; tuning.csv beside it
    results/<preset>/<study>.csv                the study's table, one row per run
    figures/<preset>/<study>/<kind>.*           its figures;  logs/<preset>/...  the jobs' logs
"""

from __future__ import annotations

from dataclasses import dataclass

FINAL, TUNE = "final", "tune"  # a study's stages: its runs, and the runs that tune them


@dataclass(frozen=True)
class Layout:
    preset: str

    @property
    def results(self) -> str:
        return f"results/{self.preset}"

    @property
    def figures(self) -> str:
        return f"figures/{self.preset}"

    @property
    def logs(self) -> str:
        return f"logs/{self.preset}"

    def run_dir(self, study: str, run: str, stage: str = FINAL) -> str:
        return f"{self.results}/{'runs' if stage == FINAL else 'tuning'}/{study}/{run}"

    def spec(self, study: str, pack: str) -> str:
        return f"{self.results}/packs/{study}/{pack}.json"

    def selected(self, study: str) -> str:
        return f"{self.results}/{study}/selected.yaml"

    def tuning_table(self, study: str) -> str:
        return f"{self.results}/{study}/tuning.csv"

    def study_table(self, study: str) -> str:
        return f"{self.results}/{study}.csv"

    def figure(self, study: str, kind: str) -> str:
        """Without extension: the figure job adds .png, .pdf, .caption.rst (and .md, .tex)."""
        return f"{self.figures}/{study}/{kind}"
