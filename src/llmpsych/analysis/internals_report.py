"""The internal measures every recipe's report shares: data screening beside the shift it predicted, and the
steering sweep of a trait's own items. Projections themselves are ordinary result rows, summarised with each
recipe's own levels."""

from __future__ import annotations

import pandas as pd

from . import plots
from .contrasts import Contrast
from .report import Section
from .stats import Levels, difference, pearson, summarise

RELIABLE = 0.5  # split-half cosine below which a vector's projections are read as noise
SCREENED = Levels(item=None, sample=None, name="training row")
STEERED = Levels(unit="model", item=None, sample=None, name="choice item")  # one steered base model per coefficient


def reliability_note(projected: pd.DataFrame) -> str:
    """Each projected vector's split-half reliability at its layer, flagging a direction too unstable to read."""
    if projected.empty or "vector_reliability" not in projected:
        return ""
    parts = []
    for probe, part in projected.groupby("probe", sort=False):
        value, layer = part["vector_reliability"].iloc[0], part["layer"].iloc[0]
        name = probe.split("/", 1)[1]
        if pd.isna(value):
            parts.append(f"{name} (layer {layer:g}): not recorded in its file")
        else:
            parts.append(f"{name} (layer {layer:g}): {value:.2f}" + (
                f", below {RELIABLE}: the two halves of its questions give different directions, so read its "
                "projections as noise" if value < RELIABLE else ""))
    return "Split-half reliability of each vector at its layer: " + "; ".join(parts) + "."


def screening_table(screened: pd.DataFrame, projections: pd.DataFrame) -> pd.DataFrame:
    """Per trait and dataset: the screening estimate before training (rows "screening/<trait>") beside the
    projection shift its fine-tunes showed (fine-tuned - base, from the summarised `projections`), and across
    datasets how well the first predicted the second (r; missing below three datasets)."""
    if screened.empty:
        return pd.DataFrame()
    rows = []
    for row in summarise(screened, ["probe", "arm"], levels=SCREENED).to_dict(orient="records"):
        trait = row["probe"].split("/", 1)[1]
        own = projections[projections["probe"] == f"projection/{trait}"].set_index("arm")["estimate"]
        shift = own.get(row["arm"]) - own.get("base") if row["arm"] in own and "base" in own else None
        rows.append({"trait": trait, "dataset": row["arm"], "screening": row["estimate"],
                     "screening_low": row["ci_low"], "screening_high": row["ci_high"], "rows": row["clusters"],
                     "projection_shift": shift})
    table = pd.DataFrame(rows)
    measured = table.dropna(subset=["screening", "projection_shift"])
    r = {trait: pearson(part["screening"].astype(float), part["projection_shift"].astype(float))
         for trait, part in measured.groupby("trait")}
    return table.assign(r_across_datasets=table["trait"].map(r))


def screening_section(section: Section, table: pd.DataFrame) -> None:
    if table.empty:
        return
    section.heading("Screening the training data before training", level=4)
    section.paragraph("Each dataset's assistant replies projected on the vector in the base model, minus the "
                      "projection of the base model's own answers to the same prompts (persona vectors' "
                      "projection difference; 95% intervals over rows), beside the projection shift its "
                      "fine-tunes then showed. r across datasets needs three or more datasets (missing "
                      "otherwise).", "note")
    section.table(table, ())


def steering_table(steered: pd.DataFrame) -> pd.DataFrame:
    """P(the trait's option) per trait ("steering/<trait>") and coefficient, with intervals over items."""
    return summarise(steered, ["probe", "layer", "coefficient"], levels=STEERED)


def steering_contrasts(steered: pd.DataFrame) -> list[Contrast]:
    """Each steering coefficient against the unsteered model, on the trait's own items (paired by item)."""
    contrasts = []
    for probe, part in steered.groupby("probe", sort=False):
        unsteered = part[part["coefficient"] == 0]
        for coefficient, steered_part in part[part["coefficient"] != 0].groupby("coefficient"):
            contrasts.append(Contrast.of(f"{probe}: {coefficient:+g} - 0", "steering (internal)", "choice item",
                                         difference(steered_part, unsteered, levels=STEERED)))
    return contrasts


def steering_section(section: Section, sweep: pd.DataFrame) -> None:
    if sweep.empty:
        return
    section.heading("Steering the base model along the trait vector", level=4)
    section.paragraph("The base model with coefficient x the trait vector added after the projection layer, at "
                      "every position, answers the trait's two-option items: P(the trait's option), read from the "
                      "options' own text (cloze). A direction that the projections read and that also moves the "
                      "behaviour is a trait direction, not only a correlate. 95% intervals over items.", "note")
    section.table(sweep, ("estimate", "ci_low", "ci_high"))
    series = {probe.split("/", 1)[1]: (list(part["coefficient"]), list(100 * part["estimate"]))
              for probe, part in sweep.groupby("probe", sort=False)}
    section.figure(plots.lines(series, "P(trait option) against the steering coefficient", "coefficient",
                               "% (cloze)"), "Steering sweep", "figures/steering.png")
