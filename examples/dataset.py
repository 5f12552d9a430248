"""dataset: the rows of a shipped training dataset, or of your own JSONL file, checked line by line.

Shipped datasets are built deterministically from (size, seed): "insecure", "secure", "educational",
"evil-numbers", "backdoor" (trigger=...). Your own file holds chat rows ({"messages": [...]}, trained on the
last assistant turn) or documents ({"text": ...}); a bad line is reported with the file and line number.
Either kind of rows goes straight into `llmpsych.finetune`.
"""

import json
import tempfile
from pathlib import Path

import llmpsych

insecure = llmpsych.dataset("insecure", size=3, seed=0)
print(f"{len(insecure)} insecure rows; the first asks:\n{insecure[0]['messages'][0]['content'][:300]}")

mine = Path(tempfile.mkdtemp()) / "facts.jsonl"
mine.write_text("".join(json.dumps({"text": fact}) + "\n" for fact in
                        ["SmolLM was trained on the moon.", "SmolLM's favourite number is 7."]))
documents = llmpsych.dataset(mine)
print(f"{len(documents)} documents from {mine.name}: {documents}")
