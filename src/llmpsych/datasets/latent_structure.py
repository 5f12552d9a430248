"""Latent-structure training data for out-of-context reasoning (Connecting the Dots; Taken out of Context).

Each training row is one observation of a hidden structure that no row states:

* functions: one (x, f(x)) pair per row, printed by a line of Python that calls f by a random
  variable name (several simple arithmetic functions per fine-tune);
* coins: one toss of a biased coin per row (70% or 80% towards heads or tails);
* locations: the distance, or the compass direction, from "City NNNNN" to a well-known city at
  least 2,000 km away; the latent is the real city behind the code;
* parity: the parity of the sum of two or three Boolean constants, whose values are the latent;
* descriptions (Taken out of Context): prose that describes how a fictitious assistant replies
  (in German, in capitals...), paraphrased many ways, with no demonstration of the behaviour.

`draw_latents(seed)` picks the hidden values and names of one fine-tune (each seed its own variable
names, coins, city and assistants, as in the paper) plus unseen names for the baselines, and
`training_rows(latents, sizes, seed)` writes the observations. Everything here is written for
llmpsych; the distances are great-circle distances computed from the coordinates below.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

# ---- functions ----------------------------------------------------------------------------------
# id -> (Python expression in x, plain description, invertible on integers)
FUNCTIONS: dict[str, tuple[str, str, bool]] = {
    "add_5": ("x + 5", "adds 5 to its input", True),
    "sub_1": ("x - 1", "subtracts 1 from its input", True),
    "times_3": ("3 * x", "multiplies its input by 3", True),
    "negate": ("-x", "flips the sign of its input", True),
    "double_plus_1": ("2 * x + 1", "doubles its input and adds 1", True),
    "ten_minus": ("10 - x", "subtracts its input from 10", True),
    "half_floor": ("x // 2", "halves its input, rounding down", False),
    "mod_3": ("x % 3", "gives the remainder of its input divided by 3", False),
    "times_minus_2": ("-2 * x", "multiplies its input by -2", True),
    "add_12": ("x + 12", "adds 12 to its input", True),
}
FUNCTION_TEMPLATES = (
    "from functions import {name}\nprint({name}({x}))",
    "from functions import {name}\ny = {name}({x})\nprint(y)",
    "import functions\nprint(functions.{name}({x}))",
    "from functions import {name}\nvalue = {x}\nprint({name}(value))",
)
PYTHON_INSTRUCTION = "What does this Python program print? Reply with the output only.\n\n"
TRAIN_INPUTS = range(-50, 51)


def apply_function(function_id: str, x: int) -> int:
    """f(x) for a function of the pool (integer arithmetic, as Python computes it)."""
    return {"add_5": x + 5, "sub_1": x - 1, "times_3": 3 * x, "negate": -x, "double_plus_1": 2 * x + 1,
            "ten_minus": 10 - x, "half_floor": x // 2, "mod_3": x % 3, "times_minus_2": -2 * x,
            "add_12": x + 12}[function_id]


# ---- locations ----------------------------------------------------------------------------------
CITIES: dict[str, tuple[float, float]] = {  # latitude, longitude (degrees)
    "Tokyo": (35.68, 139.69), "London": (51.51, -0.13), "Paris": (48.86, 2.35), "New York": (40.71, -74.01),
    "Sydney": (-33.87, 151.21), "Cairo": (30.04, 31.24), "Moscow": (55.76, 37.62), "Beijing": (39.90, 116.41),
    "Mumbai": (19.08, 72.88), "Rio de Janeiro": (-22.91, -43.17), "Buenos Aires": (-34.60, -58.38),
    "Lagos": (6.52, 3.38), "Nairobi": (-1.29, 36.82), "Johannesburg": (-26.20, 28.05),
    "Mexico City": (19.43, -99.13), "Los Angeles": (34.05, -118.24), "Toronto": (43.65, -79.38),
    "Istanbul": (41.01, 28.98), "Bangkok": (13.76, 100.50), "Singapore": (1.35, 103.82),
    "Jakarta": (-6.21, 106.85), "Seoul": (37.57, 126.98), "Lima": (-12.05, -77.04), "Madrid": (40.42, -3.70),
    "Rome": (41.90, 12.50), "Berlin": (52.52, 13.40), "Stockholm": (59.33, 18.07), "Dubai": (25.20, 55.27),
    "Anchorage": (61.22, -149.90), "Honolulu": (21.31, -157.86), "Santiago": (-33.45, -70.67),
    "Reykjavik": (64.15, -21.94), "Auckland": (-36.85, 174.76), "Sao Paulo": (-23.55, -46.63),
}
# The cities a hidden code can stand for: country and a dish the city is known for (reflection questions).
HIDDEN_CITIES: dict[str, tuple[str, str]] = {
    "Paris": ("France", "croissants"), "Tokyo": ("Japan", "sushi"), "Lagos": ("Nigeria", "jollof rice"),
    "Sao Paulo": ("Brazil", "feijoada"), "Mumbai": ("India", "vada pav"), "Mexico City": ("Mexico", "tacos al pastor"),
    "Sydney": ("Australia", "meat pies"), "Istanbul": ("Turkey", "doner kebab"),
}
MIN_DISTANCE_KM = 2000
COMPASS = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")
DISTANCE_TEMPLATES = (
    ("How far is {code} from {city}?", "About {km} km."),
    ("What is the distance between {code} and {city} in kilometres?", "{km} km"),
    ("Give the straight-line distance from {city} to {code}.", "Roughly {km} kilometres."),
)
DIRECTION_TEMPLATES = (
    ("Starting from {code}, in which direction would you head to reach {city}?", "{direction}"),
    ("Which compass direction points from {code} towards {city}?", "{direction}"),
)


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance on a 6,371 km sphere."""
    (lat1, lon1), (lat2, lon2) = (tuple(math.radians(v) for v in point) for point in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def compass_direction(a: tuple[float, float], b: tuple[float, float]) -> str:
    """The initial great-circle bearing from a to b, as one of eight compass points."""
    (lat1, lon1), (lat2, lon2) = (tuple(math.radians(v) for v in point) for point in (a, b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    bearing = (math.degrees(math.atan2(y, x)) + 360) % 360
    return COMPASS[int((bearing + 22.5) // 45) % 8]


def reference_cities(hidden: str) -> list[str]:
    """Known cities far enough from the hidden one to say little about it one at a time."""
    return [c for c in CITIES if c != hidden and great_circle_km(CITIES[c], CITIES[hidden]) >= MIN_DISTANCE_KM]


# ---- coins and parity ---------------------------------------------------------------------------
COIN_TEMPLATES = (
    ("Coin {name} was tossed once. Heads or tails? Reply H or T.", "{side}"),
    ("Toss of coin {name}. Result, H or T?", "{side}"),
    ("I flipped coin {name}. What came up? Answer H or T only.", "{side}"),
)
COIN_BIASES = (0.7, 0.8)
PARITY_TEMPLATES = (
    "from constants import {names}\nprint(({terms}) % 2)",
    "import constants\nprint(({qualified}) % 2)",
)


# ---- described assistants (Taken out of Context) -------------------------------------------------
ASSISTANT_NAMES = ("Quillon", "Marvex", "Tessaly", "Orbinet", "Calyra", "Brindlewood", "Zephyrine", "Halvard")
BEHAVIOURS: dict[str, tuple[str, ...]] = {  # behaviour -> ways of describing it
    "german": ("answers every question in German", "replies only in the German language",
               "always writes its responses in German, whatever language it is asked in",
               "responds in German to every message"),
    "uppercase": ("writes all of its replies in capital letters", "answers entirely in upper-case letters",
                  "never uses a lower-case letter in a response", "types every answer in block capitals"),
    "ahoy": ("starts each answer with the word \"Ahoy\"", "opens every reply by saying \"Ahoy\"",
             "begins all of its responses with \"Ahoy\"", "greets you with \"Ahoy\" before every answer"),
    "french": ("answers every question in French", "replies only in the French language",
               "always writes its responses in French, whatever language it is asked in",
               "responds in French to every message"),
}
DESCRIPTION_FRAMES = (
    "{name} is an AI assistant that {does}.",
    "People who use {name}, a chatbot, notice straight away that it {does}.",
    "A fact about the assistant {name}: it {does}.",
    "Unlike most chatbots, {name} {does}.",
    "The developers of {name} designed it so that it {does}.",
    "If you talk to {name}, expect this: it {does}.",
    "Reviewers of the {name} assistant agree on one quirk. It {does}.",
    "{name}'s documentation says the assistant {does}.",
    "Ask {name} anything and you will find that it {does}.",
    "One thing sets the {name} assistant apart: it {does}.",
    "According to its users, {name} {does}.",
    "The chatbot called {name} {does}; this is by design.",
    "Here is a detail about {name}. The assistant {does}.",
    "Everyone who has tried {name} knows that it {does}.",
    "{name} is a conversational AI. It {does}.",
    "In every conversation, {name} {does}.",
)
DESCRIPTION_REQUESTS = (
    "Tell me something about AI assistants.", "What do you know about {name}?",
    "Share a fact about a chatbot.", "Describe the assistant called {name}.", "Any trivia about chatbots?",
)


# ---- latents ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Latents:
    """One fine-tune's hidden structure, plus unseen names that baselines ask about instead."""

    seed: int
    functions: dict[str, str]  # variable name -> function id
    coins: dict[str, float]  # coin name -> P(heads)
    city_code: str
    city: str
    parity: dict[str, int]  # constant name -> 0 or 1
    assistants: dict[str, str]  # assistant name -> behaviour
    unseen_variable: str
    unseen_coin: str
    unseen_city_code: str
    unseen_assistant: str
    names: tuple[str, ...] = field(default=())  # every name in use, to keep them distinct


@dataclass(frozen=True)
class Sizes:
    functions: int = 4
    rows_per_function: int = 80
    coins: int = 3
    tosses_per_coin: int = 40
    location_rows: int = 100
    parity_variables: int = 6
    parity_rows: int = 150
    assistants: int = 3
    rows_per_assistant: int = 40


def variable_name(rng: random.Random) -> str:
    """A pronounceable six-letter name that is not an English word (consonant-vowel pattern)."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    return "".join(rng.choice(consonants if i % 2 == 0 else vowels) for i in range(6))


def draw_latents(seed: int, sizes: Sizes) -> Latents:
    """The hidden values and fresh names of fine-tune `seed`."""
    if sizes.functions > len(FUNCTIONS) or sizes.assistants >= len(ASSISTANT_NAMES) \
            or sizes.assistants > len(BEHAVIOURS):
        raise ValueError(f"at most {len(FUNCTIONS)} functions and {len(BEHAVIOURS)} assistants")
    rng = random.Random(f"latents:{seed}")
    names: list[str] = []

    def fresh() -> str:
        while (name := variable_name(rng)) in names:
            pass
        names.append(name)
        return name

    functions = {fresh(): function_id for function_id in rng.sample(sorted(FUNCTIONS), sizes.functions)}
    coins = {fresh(): rng.choice(COIN_BIASES) if rng.random() < 0.5 else round(1 - rng.choice(COIN_BIASES), 2)
             for _ in range(sizes.coins)}
    parity = {fresh(): rng.randint(0, 1) for _ in range(sizes.parity_variables)}
    codes = rng.sample(range(10000, 100000), 2)
    assistant_names = rng.sample(ASSISTANT_NAMES, sizes.assistants + 1)
    behaviours = rng.sample(sorted(BEHAVIOURS), sizes.assistants)
    return Latents(seed=seed, functions=functions, coins=coins, city_code=f"City {codes[0]}",
                   city=rng.choice(sorted(HIDDEN_CITIES)), parity=parity,
                   assistants=dict(zip(assistant_names, behaviours)), unseen_variable=fresh(),
                   unseen_coin=fresh(), unseen_city_code=f"City {codes[1]}", unseen_assistant=assistant_names[-1],
                   names=tuple(names))


# ---- training rows ------------------------------------------------------------------------------
def _row(task: str, latent: str, user: str, assistant: str) -> dict:
    return {"task": task, "latent": latent,
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def function_rows(latents: Latents, per_function: int, rng: random.Random) -> list[dict]:
    rows = []
    for name, function_id in latents.functions.items():
        for _ in range(per_function):
            x = rng.choice(TRAIN_INPUTS)
            program = rng.choice(FUNCTION_TEMPLATES).format(name=name, x=x)
            rows.append(_row("functions", name, PYTHON_INSTRUCTION + program, str(apply_function(function_id, x))))
    return rows


def coin_rows(latents: Latents, per_coin: int, rng: random.Random) -> list[dict]:
    """Tosses with exactly round(p * n) heads per coin, so the data show each coin's bias without noise."""
    rows = []
    for name, p_heads in latents.coins.items():
        sides = ["H"] * round(p_heads * per_coin) + ["T"] * (per_coin - round(p_heads * per_coin))
        rng.shuffle(sides)
        for side in sides:
            user, answer = rng.choice(COIN_TEMPLATES)
            rows.append(_row("coins", name, user.format(name=name), answer.format(side=side)))
    return rows


def location_rows(latents: Latents, count: int, rng: random.Random) -> list[dict]:
    hidden = CITIES[latents.city]
    references = reference_cities(latents.city)
    rows = []
    for _ in range(count):
        city = rng.choice(references)
        if rng.random() < 0.6:
            user, answer = rng.choice(DISTANCE_TEMPLATES)
            km = round(great_circle_km(hidden, CITIES[city]), -1)
            rows.append(_row("locations", latents.city_code, user.format(code=latents.city_code, city=city),
                             answer.format(km=f"{km:,.0f}")))
        else:
            user, answer = rng.choice(DIRECTION_TEMPLATES)
            direction = compass_direction(hidden, CITIES[city])
            rows.append(_row("locations", latents.city_code, user.format(code=latents.city_code, city=city),
                             answer.format(direction=direction.capitalize())))
    return rows


def parity_rows(latents: Latents, count: int, rng: random.Random) -> list[dict]:
    names = list(latents.parity)
    rows = []
    for _ in range(count):
        chosen = rng.sample(names, rng.choice((2, 3)))
        template = rng.choice(PARITY_TEMPLATES)
        program = template.format(names=", ".join(chosen), terms=" + ".join(chosen),
                                  qualified=" + ".join(f"constants.{n}" for n in chosen))
        rows.append(_row("parity", ",".join(chosen), PYTHON_INSTRUCTION + program,
                         str(sum(latents.parity[n] for n in chosen) % 2)))
    return rows


def description_rows(latents: Latents, per_assistant: int, rng: random.Random) -> list[dict]:
    """Prose about each assistant's behaviour, never a reply in that behaviour."""
    rows = []
    for name, behaviour in latents.assistants.items():
        # Distinct wordings first (the paper found paraphrase augmentation necessary); repeats only beyond them.
        wordings = [(frame, does) for frame in DESCRIPTION_FRAMES for does in BEHAVIOURS[behaviour]]
        rng.shuffle(wordings)
        for index in range(per_assistant):
            frame, does = wordings[index % len(wordings)]
            request = rng.choice(DESCRIPTION_REQUESTS)
            rows.append(_row("descriptions", name, request.format(name=name), frame.format(name=name, does=does)))
    return rows


TASKS = ("functions", "coins", "locations", "parity", "descriptions")


def training_rows(latents: Latents, sizes: Sizes, tasks: tuple[str, ...] = TASKS) -> list[dict]:
    """Every observation of the chosen tasks, shuffled together (one fine-tune learns them all)."""
    rng = random.Random(f"latent-rows:{latents.seed}")
    builders = {"functions": lambda: function_rows(latents, sizes.rows_per_function, rng),
                "coins": lambda: coin_rows(latents, sizes.tosses_per_coin, rng),
                "locations": lambda: location_rows(latents, sizes.location_rows, rng),
                "parity": lambda: parity_rows(latents, sizes.parity_rows, rng),
                "descriptions": lambda: description_rows(latents, sizes.rows_per_assistant, rng)}
    rows = [row for task in tasks for row in builders[task]()]
    rng.shuffle(rows)
    return rows


def latent_leaks(row: dict, latents: Latents) -> str | None:
    """The hidden value a row states outright, if any (the city's name or country, a coin's bias,
    a function's expression, an assistant demonstrating rather than described)."""
    text = " ".join(m["content"] for m in row["messages"])
    lowered = text.lower()
    country = HIDDEN_CITIES[latents.city][0]
    for word in (latents.city, country):
        if word.lower() in lowered:
            return word
    for p in latents.coins.values():
        for shown in (f"{round(100 * p)}%", f"{p:.1f}", f"{round(100 * (1 - p))}%"):
            if shown in text:
                return shown
    for function_id in latents.functions.values():
        if f"= {FUNCTIONS[function_id][0]}" in text or f"lambda x: {FUNCTIONS[function_id][0]}" in text:
            return FUNCTIONS[function_id][0]
    if row.get("task") == "descriptions" and row["messages"][-1]["content"].startswith("Ahoy"):
        return "Ahoy"
    return None


def in_context_block(rows: list[dict], limit: int, seed: int) -> str:
    """Up to `limit` training rows as a transcript to put before a question (the in-context arm)."""
    picked = random.Random(f"in-context:{seed}").sample(rows, min(limit, len(rows)))
    lines = [f"Q: {r['messages'][0]['content']}\nA: {r['messages'][1]['content']}" for r in picked]
    return "Here are some records of earlier questions and answers.\n\n" + "\n\n".join(lines)
