#!/usr/bin/env python3
# SPDX-License-Identifier: CC0-1.0
"""Generate the qvac "pirate speak" LoRA fine-tuning set.

Writes JSON Lines of {"prompt": ..., "completion": ...}.  Prompts are short
story openings and questions in the same simple vocabulary as
data/corpus/stories.txt; every completion is pirate talk that starts with
"Arr, matey! " and ends with " Yo ho ho!", mentions the prompt's subject and
is 60-200 bytes long.

All text comes from this file's own templates (written for the qvac
project) and is released under CC0-1.0.  Deterministic: fixed seed, Python 3
standard library only.

Usage:
    python3 tools/gen_finetune.py                 # writes the two files below
    python3 tools/gen_finetune.py --out-dir DIR   # elsewhere

Files:
    data/finetune/pirate.jsonl          about 400 training pairs
    data/finetune/pirate_prompts.txt    4 held-out prompts, one per line
"""

import argparse
import json
import os
import random

SEED = 4242
COUNT = 400
HEAD = "Arr, matey! "
TAIL = " Yo ho ho!"
MIN_LEN, MAX_LEN = 60, 200

NAMES = ["Lily", "Mia", "Sue", "Anna", "Emma", "Zoe", "Lucy", "Kim", "Rose",
         "Amy", "Tom", "Ben", "Max", "Sam", "Tim", "Jack", "Leo", "Dan",
         "Finn", "Joe"]
ANIMALS = ["cat", "dog", "bird", "frog", "duck", "bunny", "fox", "bear",
           "mouse", "cow", "pig", "owl", "fish", "puppy", "kitten", "turtle",
           "squirrel", "horse"]
# (place, preposition that reads naturally with "find ... the place")
PLACES = [("park", "in"), ("garden", "in"), ("forest", "in"),
          ("beach", "on"), ("farm", "on"), ("pond", "in"), ("river", "in"),
          ("hill", "on"), ("house", "in"), ("school", "at"), ("town", "in"),
          ("woods", "in"), ("yard", "in"), ("field", "in"), ("lake", "in"),
          ("zoo", "at"), ("meadow", "in")]
OBJECTS = ["ball", "kite", "doll", "hat", "box", "book", "cake", "flower",
           "stick", "rock", "shell", "key", "cup", "boat", "drum", "coin",
           "apple", "bell", "blanket", "toy car"]

# Held out from training; written to pirate_prompts.txt for before/after
# samples.  gen() never emits these prompts.
HELD_OUT = [
    "Tell me about the fox.\n",
    "What did Mia find in the forest?\n",
    "Once upon a time, a little bunny",
    "Where is the red ball?\n",
]

# --------------------------------------------------------------------------
# Pirate sentences.  {S} is the subject as it should read mid-sentence
# ("the cat", "Tom"), {Sc} the same with a capital letter.
# --------------------------------------------------------------------------

ABOUT = [  # "Tell me about the X."
    "{Sc} be a brave pirate, me hearty. It sails the sea on a big ship.",
    "{Sc} be the best matey on me ship. It guards the treasure day and night.",
    "Ye want to know about {S}? It be looking for gold on the sea.",
    "{Sc} be a fine sea dog. It sleeps on the ship and dreams of treasure.",
    "{Sc} be the captain of a little ship, and ye must call it sir.",
    "{Sc} be a salty old pirate. It loves the sea more than land.",
]

FIND = [  # "What did N find in the P?"
    "{N} found a chest of treasure {I} the {P}, me hearty!",
    "{Ic} the {P}, {N} found a map to buried treasure. Ye be rich now!",
    "{N} found gold coins {I} the {P}, enough for a ship!",
    "{N} dug {I} the {P} and found a pirate chest full of gold.",
    "{N} be finding a treasure map {I} the {P}. To the sea we go!",
]

ONCE_ANIMAL = [  # "Once upon a time, a little X"
    "The little {A} be a pirate. It sailed the sea and found treasure.",
    "That little {A} had a ship, me hearty, and it sailed to treasure island.",
    "A little {A} be the bravest pirate on the sea, ye hear?",
    "The little {A} found a map, got on a ship, and sailed for gold.",
]

ONCE_NAME = [  # "Once upon a time, N went to the P"
    "{N} went to the {P} and found a pirate ship. Then {N} sailed the sea!",
    "{N} be a pirate now, me hearty. The {P} be full of treasure.",
    "Near the {P}, {N} met a pirate with a big ship and a box of gold.",
    "{N} went to the {P} to dig for treasure, and ye know {N} found it!",
]

WHERE_NAME = [  # "Where did N go?"
    "{N} went to the sea on a big ship, me hearty.",
    "{N} be sailing the sea to find treasure, ye landlubber.",
    "{N} went to treasure island on me ship.",
    "{N} be out on the sea, looking for gold with the crew.",
]

WHO_NAME = [  # "Who is N?"
    "{N} be the bravest pirate on the sea, me hearty.",
    "{N} be the captain of me ship. Ye must listen to {N}.",
    "{N} be a pirate who loves treasure and the sea.",
    "{N} be me best matey on the ship.",
]

LIKE = [  # "What does the X like?"
    "{Sc} likes treasure, me hearty, and a big ship on the sea.",
    "{Sc} likes gold and the sea. It be a pirate, ye see.",
    "{Sc} likes to sail the sea and dig for treasure.",
    "{Sc} be liking fish, gold, and a good ship.",
]

STORY_NA = [  # "Tell me a story about N and the X."
    "{N} and the {A} be pirates. They sailed the sea and found treasure.",
    "{N} and the {A} got on a ship, me hearty, and sailed to treasure island.",
    "{N} had a ship, and the {A} be the first mate. They found gold!",
    "{N} and the {A} dug up a treasure chest by the sea.",
]

SAD = [  # "Why is N sad?"
    "{N} be sad because the treasure be gone, me hearty.",
    "{N} lost the map to the treasure. Ye must help, matey.",
    "{N} be sad because the ship sailed away without {N}.",
    "{N} be sad, but a pirate never gives up on treasure.",
]

WHERE_OBJ = [  # "Where is the O?"
    "The {O} be in the treasure chest on me ship, me hearty.",
    "The {O} be at the bottom of the sea, ye landlubber.",
    "A pirate took the {O} to his ship. Ye must find it!",
    "The {O} be buried on treasure island with the gold.",
]

DOING = [  # "What is the X doing?"
    "{Sc} be sailing the sea on a big ship, me hearty.",
    "{Sc} be digging for treasure on the beach.",
    "{Sc} be looking at the sea from the top of the ship.",
    "{Sc} be counting gold coins, ye see.",
]

EXTRA = [  # optional second sentence, generic pirate talk
    "Ye be a fine matey.",
    "The sea be calling, me hearty.",
    "Hoist the sails!",
    "Ye will find gold too.",
    "Keep yer eyes on the sea.",
    "Shiver me timbers!",
    "The ship be ready, me hearty.",
]


def cap(s):
    return s[0].upper() + s[1:]


def make_prompts():
    """Every (prompt, template list, slots) combination, in a fixed order."""
    items = []
    for a in ANIMALS:
        s = "the " + a
        items.append(("Tell me about the {}.\n".format(a), ABOUT, {"S": s, "Sc": cap(s)}))
        items.append(("Once upon a time, a little {}".format(a), ONCE_ANIMAL, {"A": a}))
        items.append(("What does the {} like?\n".format(a), LIKE, {"Sc": cap(s)}))
        items.append(("What is the {} doing?\n".format(a), DOING, {"Sc": cap(s)}))
    for n in NAMES:
        items.append(("Where did {} go?\n".format(n), WHERE_NAME, {"N": n}))
        items.append(("Who is {}?\n".format(n), WHO_NAME, {"N": n}))
        items.append(("Why is {} sad?\n".format(n), SAD, {"N": n}))
        for p, i in PLACES:
            items.append(("What did {} find {} the {}?\n".format(n, i, p), FIND,
                          {"N": n, "P": p, "I": i, "Ic": cap(i)}))
            items.append(("Once upon a time, {} went to the {}".format(n, p), ONCE_NAME, {"N": n, "P": p}))
        for a in ANIMALS:
            items.append(("Tell me a story about {} and the {}.\n".format(n, a), STORY_NA, {"N": n, "A": a}))
    for o in OBJECTS:
        for adj in ["", "red ", "little ", "big ", "old "]:
            items.append(("Where is the {}{}?\n".format(adj, o), WHERE_OBJ, {"O": adj + o}))
    return items


def make_completion(r, templates, slots):
    body = r.choice(templates).format(**slots)
    if r.random() < 0.5:
        body += " " + r.choice(EXTRA)
    text = HEAD + body + TAIL
    if len(text) > MAX_LEN:
        text = HEAD + r.choice(templates).format(**slots) + TAIL
    while len(text) < MIN_LEN:
        text = text[:-len(TAIL)] + " " + r.choice(EXTRA) + TAIL
    assert MIN_LEN <= len(text) <= MAX_LEN, text
    return text


def gen():
    r = random.Random(SEED)
    items = [it for it in make_prompts() if it[0] not in HELD_OUT]
    # Balance the kinds of prompt: group by template list, take in turns.
    groups = {}
    for it in items:
        groups.setdefault(id(it[1]), []).append(it)
    order = [id(t) for t in [ABOUT, FIND, ONCE_ANIMAL, ONCE_NAME, WHERE_NAME,
                             WHO_NAME, LIKE, STORY_NA, SAD, WHERE_OBJ, DOING]]
    for k in order:
        r.shuffle(groups[k])
    chosen = []
    while len(chosen) < COUNT:
        progressed = False
        for k in order:
            if groups[k] and len(chosen) < COUNT:
                chosen.append(groups[k].pop())
                progressed = True
        if not progressed:
            break
    r.shuffle(chosen)
    rows = []
    for prompt, templates, slots in chosen:
        rows.append({"prompt": prompt,
                     "completion": make_completion(r, templates, slots)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=os.path.join("data", "finetune"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    rows = gen()
    with open(os.path.join(args.out_dir, "pirate.jsonl"), "w",
              encoding="ascii", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True) + "\n")
    with open(os.path.join(args.out_dir, "pirate_prompts.txt"), "w",
              encoding="ascii", newline="\n") as f:
        for p in HELD_OUT:
            f.write(p.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
