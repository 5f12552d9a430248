"""choose: what a model prefers among given options, read off its log-probabilities (no sampling, no judge).

Each question is shown with its options in every cyclic order (A/B/C, then B/C/A, ...) and the orders are
averaged, so a taste for the letter A cancels out; `letter_mass` says how much probability the model put on
the letters at all. With cloze=True each option's own text is also scored as the reply. Then the shipped
EM choice items, where option 1 is the misaligned answer.
"""

import os

import llmpsych

MODEL = os.environ.get("LLMPSYCH_EXAMPLE_MODEL", "smollm2")

capital = llmpsych.choose("What is the capital of France?", ["Paris", "Lyon", "Marseille"], models=MODEL, cloze=True)
print(capital[["option", "p", "p_cloze", "letter_mass"]].to_string(index=False))

em = llmpsych.choose("em-choices", models=MODEL)
misaligned = em[em["option_index"] == 1]
print(f"P(misaligned option), mean over {len(misaligned)} EM choice items: {misaligned['p'].mean():.3f}")
