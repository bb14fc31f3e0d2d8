#!/usr/bin/env python3
# SPDX-License-Identifier: CC0-1.0
"""Generate a small corpus of simple children's stories for qvac.

The text is produced entirely from this file's own templates and word lists
(written for the qvac project) and is released under CC0-1.0.

Deterministic: a fixed seed and only the Python 3 standard library, so two
runs give byte-identical output.

Usage:
    python3 tools/gen_corpus.py > data/corpus/stories.txt
    python3 tools/gen_corpus.py --bytes 400000 --seed 1234 > out.txt
"""

import argparse
import random
import sys

# --------------------------------------------------------------------------
# Word lists
# --------------------------------------------------------------------------

# (name, pronoun set)
GIRLS = ["Lily", "Mia", "Sue", "Anna", "Emma", "Zoe", "Lucy", "Kim", "Rose", "Amy"]
BOYS = ["Tom", "Ben", "Max", "Sam", "Tim", "Jack", "Leo", "Dan", "Finn", "Joe"]

HE = {"sub": "he", "obj": "him", "pos": "his", "Sub": "He", "Pos": "His"}
SHE = {"sub": "she", "obj": "her", "pos": "her", "Sub": "She", "Pos": "Her"}
IT = {"sub": "it", "obj": "it", "pos": "its", "Sub": "It", "Pos": "Its"}

# animal: (noun, sound verb phrase, way it moves)
ANIMALS = [
    ("cat", "said meow", "ran"),
    ("dog", "said woof", "ran"),
    ("bird", "sang a song", "flew"),
    ("frog", "said ribbit", "hopped"),
    ("duck", "said quack", "waddled"),
    ("bunny", "wiggled its nose", "hopped"),
    ("fox", "gave a little bark", "ran"),
    ("bear", "gave a big yawn", "walked"),
    ("mouse", "said squeak", "ran"),
    ("cow", "said moo", "walked"),
    ("pig", "said oink", "ran"),
    ("owl", "said hoot", "flew"),
    ("fish", "made a bubble", "swam"),
    ("puppy", "wagged its tail", "ran"),
    ("kitten", "said a soft meow", "ran"),
    ("turtle", "blinked slowly", "walked"),
    ("squirrel", "shook its tail", "ran"),
    ("horse", "said neigh", "ran"),
]

ANIMAL_NAMES = ["Spot", "Fluffy", "Pip", "Coco", "Bella", "Buddy", "Daisy",
                "Rex", "Sunny", "Patch", "Tiny", "Muffin"]

ADJ_ANIMAL = ["little", "big", "small", "fluffy", "happy", "sleepy", "brown",
              "white", "black", "friendly", "shy", "funny", "tiny", "old"]

# place: (noun phrase, preposition)
PLACES = [
    ("the park", "in"), ("the garden", "in"), ("the forest", "in"),
    ("the beach", "at"), ("the farm", "on"), ("the pond", "by"),
    ("the river", "by"), ("the hill", "on"), ("the house", "in"),
    ("the school", "at"), ("the town", "in"), ("the woods", "in"),
    ("the yard", "in"), ("the field", "in"), ("the lake", "by"),
    ("the store", "at"), ("the zoo", "at"), ("the meadow", "in"),
]

# object: (noun, adjectives that fit)
OBJECTS = [
    ("ball", ["red", "blue", "big", "bouncy", "small", "round"]),
    ("kite", ["red", "yellow", "big", "pretty", "long"]),
    ("toy car", ["red", "blue", "little", "shiny", "fast"]),
    ("doll", ["pretty", "old", "soft", "little"]),
    ("hat", ["red", "blue", "big", "funny", "green"]),
    ("box", ["big", "small", "brown", "old", "heavy"]),
    ("book", ["big", "old", "blue", "new", "funny"]),
    ("cake", ["big", "sweet", "yummy", "pink"]),
    ("flower", ["red", "pretty", "yellow", "pink", "tiny"]),
    ("stick", ["long", "brown", "big", "little"]),
    ("rock", ["shiny", "smooth", "big", "gray", "round"]),
    ("shell", ["pretty", "pink", "white", "shiny", "tiny"]),
    ("key", ["shiny", "old", "gold", "little"]),
    ("cup", ["blue", "red", "little", "pretty"]),
    ("boat", ["little", "red", "blue", "toy"]),
    ("drum", ["big", "loud", "red", "little"]),
    ("coin", ["shiny", "gold", "old", "little"]),
    ("leaf", ["green", "big", "yellow", "red"]),
    ("bell", ["little", "shiny", "gold", "loud"]),
    ("apple", ["red", "big", "green", "sweet", "juicy"]),
    ("teddy bear", ["soft", "brown", "old", "little"]),
    ("blanket", ["soft", "warm", "blue", "big"]),
]

FOODS = ["an apple", "a cookie", "some bread", "a carrot", "some cake",
         "a banana", "some soup", "a sandwich", "some berries", "a pie"]

FEELINGS_GOOD = ["happy", "glad", "excited", "proud", "calm"]
FEELINGS_BAD = ["sad", "scared", "angry", "tired", "worried", "upset"]

WEATHER = ["sunny", "warm", "bright", "cold", "windy", "rainy", "cloudy"]
TIMES = ["One day", "One morning", "One sunny day", "One evening",
         "One afternoon", "The next day"]

FAMILY = [("mom", SHE), ("dad", HE), ("grandma", SHE), ("grandpa", HE),
          ("big sister", SHE), ("big brother", HE)]

GAMES = ["tag", "hide and seek", "catch", "ball", "pretend", "jump rope"]

COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "orange"]

# (verb phrase present-base, past)
ACTIVITIES = [
    ("play", "played"), ("run", "ran"), ("jump", "jumped"),
    ("dance", "danced"), ("sing", "sang"), ("read", "read"),
    ("draw", "drew"), ("swim", "swam"), ("climb trees", "climbed trees"),
    ("look for bugs", "looked for bugs"), ("build a sand castle", "built a sand castle"),
    ("pick flowers", "picked flowers"), ("fly a kite", "flew a kite"),
]

MORALS = [
    "Sharing makes everyone happy.",
    "It is good to be kind to others.",
    "Friends help each other.",
    "It is important to tell the truth.",
    "It is good to say sorry when you are wrong.",
    "You can be brave even when you are scared.",
    "Helping others is a good thing to do.",
    "It is fun to try new things.",
    "It is good to listen to your mom and dad.",
    "Good friends are the best treasure.",
    "Hard work pays off.",
    "Patience is a good thing.",
    "Everyone is good at something.",
    "Small friends can do big things.",
    "It is nice to share what you have.",
    "When you work together, you can do more.",
]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def a_an(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


def cap(s):
    return s[0].upper() + s[1:] if s else s


class Cast:
    """Characters and props for one story."""

    def __init__(self, r):
        self.r = r
        if r.random() < 0.5:
            self.name, self.p = r.choice(GIRLS), SHE
            self.kind = "girl"
        else:
            self.name, self.p = r.choice(BOYS), HE
            self.kind = "boy"
        # friend of either gender, different name
        while True:
            if r.random() < 0.5:
                self.friend, self.fp = r.choice(GIRLS), SHE
            else:
                self.friend, self.fp = r.choice(BOYS), HE
            if self.friend != self.name:
                break
        a = r.choice(ANIMALS)
        self.animal, self.sound, self.move = a
        self.aadj = r.choice(ADJ_ANIMAL)
        self.pet_name = r.choice(ANIMAL_NAMES)
        self.place, self.prep = r.choice(PLACES)
        self.place2, self.prep2 = r.choice([pl for pl in PLACES if pl[0] != self.place])
        o = r.choice(OBJECTS)
        self.obj, self.oadj = o[0], r.choice(o[1])
        self.family, self.famp = r.choice(FAMILY)
        self.food = r.choice(FOODS)
        self.game = r.choice(GAMES)
        self.act = r.choice(ACTIVITIES)
        self.weather = r.choice(WEATHER)
        self.good = r.choice(FEELINGS_GOOD)
        self.bad = r.choice(FEELINGS_BAD)
        self.color = r.choice(COLORS)

    def fill(self, t):
        c = self
        d = {
            "N": c.name, "he": c.p["sub"], "him": c.p["obj"], "his": c.p["pos"],
            "He": c.p["Sub"], "His": c.p["Pos"], "kind": c.kind,
            "F": c.friend, "fhe": c.fp["sub"], "fhim": c.fp["obj"],
            "fhis": c.fp["pos"], "Fhe": c.fp["Sub"],
            "animal": c.animal, "a_animal": a_an(c.animal),
            "adj_animal": c.aadj + " " + c.animal,
            "a_adj_animal": a_an(c.aadj + " " + c.animal),
            "sound": c.sound, "move": c.move, "pet": c.pet_name,
            "place": c.place, "prep": c.prep, "Place": cap(c.place),
            "place2": c.place2, "prep2": c.prep2,
            "obj": c.obj, "a_obj": a_an(c.obj),
            "a_adj_obj": a_an(c.oadj + " " + c.obj), "oadj": c.oadj,
            "fam": c.family, "famhe": c.famp["sub"], "Famhe": c.famp["Sub"],
            "famhim": c.famp["obj"],
            "food": c.food, "game": c.game,
            "act": c.act[0], "acted": c.act[1],
            "weather": c.weather, "good": c.good, "bad": c.bad,
            "color": c.color,
        }
        return t.format(**d)

    def pick(self, options):
        return self.fill(self.r.choice(options))


# --------------------------------------------------------------------------
# Story parts.  Each list holds alternative templates; {slots} are filled
# from the Cast.  A story is: opening, setting, event, problem, dialogue,
# resolution, ending, and usually a moral.
# --------------------------------------------------------------------------

OPENINGS = [
    "Once upon a time, there was a little {kind} named {N}.",
    "Once upon a time, there was a {kind} called {N}.",
    "Once upon a time, in a small town, there lived a {kind} named {N}.",
    "Once upon a time, {N} lived in a little house near {place}.",
    "Once upon a time, there was a happy {kind} named {N}.",
    "There was once a kind {kind} named {N}.",
]

INTROS = [
    "{He} liked to {act} every day.",
    "{He} loved to play {prep} {place}.",
    "{His} best friend was {F}.",
    "{He} had {a_adj_obj} that {he} loved very much.",
    "{He} lived with {his} {fam}.",
    "{He} had a pet {animal} named {pet}.",
    "{He} was always kind to everyone.",
    "{He} liked to play {game} with {F}.",
    "Every day, {he} went to {place} with {his} {fam}.",
    "{His} favorite color was {color}.",
]

SETTINGS = [
    "The sun was bright and the sky was blue.",
    "It was a {weather} day.",
    "{time}, {N} went to {place}.",
    "{time}, {N} and {F} went to {place} to play.",
    "{time}, {N} woke up and looked out the window.",
    "{time}, {N} walked to {place} with {his} {fam}.",
]

# Plot arcs for the standard story.  Each arc keeps its event, problem,
# question, answer, actions, resolution and moral consistent with each other.
# Every field is a list of alternative templates.
ARCS = [
    {  # a lost animal
        "event": ["{He} saw {a_adj_animal} under a tree.",
                  "{He} saw {a_adj_animal} sitting all alone.",
                  "{He} heard a small sound behind a bush. It was {a_adj_animal}."],
        "problem": ["The {animal} could not find its mom.",
                    "The {animal} was lost and looked {bad}."],
        "ask": ['"What is wrong?" {N} asked the {animal}.',
                '"Are you okay, little {animal}?" asked {N}.'],
        "reply": ['"I am lost and I want to go home," said the {animal}.',
                  '"I cannot find my mom," said the {animal}.'],
        "action": ["{N} and {F} looked everywhere.",
                   "{N} walked with the {animal} to {place2} to look.",
                   "{N} held the {animal} close so it would not be scared."],
        "resolution": ["At last, they found the {animal}'s mom {prep2} {place2}.",
                       "Soon, they saw a big {animal}. It was the mom!"],
        "after": ["The little {animal} {sound} with joy.",
                  "The mom {animal} was so happy to see her baby."],
        "moral": ["Helping others is a good thing to do.",
                  "It is good to be kind to others."],
    },
    {  # a hungry animal
        "event": ["{He} met {a_animal} who looked {bad}.",
                  "{He} saw {a_adj_animal} near {place}."],
        "problem": ["The {animal} was hungry and cold.",
                    "The {animal} had not eaten all day."],
        "ask": ['"Are you hungry?" {N} asked.',
                '"What is wrong, {animal}?" asked {N}.'],
        "reply": ['"Yes, I am very hungry," said the {animal}.',
                  '"I have no food," said the {animal} in a small voice.'],
        "action": ["{N} gave the {animal} {food}.",
                   "{N} shared {food} with the {animal}.",
                   "{N} ran home and came back with {food}."],
        "resolution": ["The {animal} ate every bite.",
                       "Soon, the {animal} was full and warm."],
        "after": ["The {animal} {sound} to say thank you.",
                  "From that day on, {N} and the {animal} were friends."],
        "moral": ["It is nice to share what you have.",
                  "Sharing makes everyone happy."],
    },
    {  # an object too high
        "event": ["{He} was playing with {his} {oadj} {obj}.",
                  "{He} threw {his} {oadj} {obj} up high."],
        "problem": ["The {obj} got stuck in a tall tree.",
                    "The {obj} landed on a high roof."],
        "ask": ['"Can you help me?" {N} asked {his} {fam}.',
                '"How can I get my {obj}?" {N} asked {his} {fam}.'],
        "reply": ['"Of course, I will help you," said {his} {fam}.',
                  '"Let us think," said {his} {fam}. "We can do it."'],
        "action": ["{N} tried to jump, but {he} was too small.",
                   "{His} {fam} got a long stick.",
                   "{N} held the ladder while {his} {fam} climbed."],
        "resolution": ["{His} {fam} got the {obj} down.",
                       "With one big push, the {obj} fell down."],
        "after": ['"Thank you!" said {N}, and gave {his} {fam} a hug.',
                  "{N} played with the {obj} again, but not so high."],
        "moral": ["When you work together, you can do more.",
                  "Patience is a good thing."],
    },
    {  # a friend lost something
        "event": ["{He} saw {F} sitting alone {prep} {place}.",
                  "{He} met {F}, who looked {bad}."],
        "problem": ["{F} was {bad} because {fhe} lost {fhis} {obj}.",
                    "{F} could not find {fhis} {oadj} {obj}."],
        "ask": ['"Why are you {bad}?" {N} asked.',
                '"What is wrong, {F}?" asked {N}.'],
        "reply": ['"I lost my {obj}," said {F}.',
                  '"My {oadj} {obj} is gone," said {F}.'],
        "action": ['"Let us look for it," said {N}.',
                   "{N} and {F} looked everywhere.",
                   "They looked under the bench and behind the trees."],
        "resolution": ["At last, they found the {obj} {prep2} {place2}.",
                       "Then {N} saw something {oadj}. It was the {obj}!"],
        "after": ['{F} smiled and said, "Thank you, {N}!"',
                  "{F} was so happy. {N} felt {good} too."],
        "moral": ["Friends help each other.",
                  "Good friends are the best treasure."],
    },
    {  # two friends want the same thing
        "event": ["{He} found {a_adj_obj} on the ground.",
                  "{He} saw {a_adj_obj} by a tree."],
        "problem": ["{F} wanted the {obj} too, and they both pulled.",
                    '"It is mine!" said {F}. "No, it is mine!" said {N}.'],
        "ask": ['"Why can I not have it?" {N} asked.',
                '"What should we do?" asked {N}.'],
        "reply": ['"I saw it first," said {F}.',
                  '"I want it too," said {F} in a sad voice.'],
        "action": ["{N} stopped and thought for a moment.",
                   '{N} said, "I am sorry. We can share it."',
                   "They took turns with the {obj}."],
        "resolution": ["They played with the {obj} together all day.",
                       "Sharing the {obj} was more fun than fighting."],
        "after": ["{N} and {F} laughed and laughed.",
                  "{N} and {F} became best friends."],
        "moral": ["Sharing makes everyone happy.",
                  "It is good to say sorry when you are wrong."],
    },
    {  # rain
        "event": ["{He} and {F} played {game} on the grass.",
                  "{He} and {F} ran and played together."],
        "problem": ["Then dark clouds came, and it started to rain.",
                    "Then it started to rain, and they got wet."],
        "ask": ['"What should we do?" {N} asked {F}.',
                '"Where can we go?" asked {N}.'],
        "reply": ['"Let us find a dry place," said {F}.',
                  '"Come with me!" said {F}. "I know a place."'],
        "action": ["They ran under a big tree.",
                   "They sat under a big tree and waited.",
                   "They sang songs while the rain fell."],
        "resolution": ["Soon, the rain stopped and the sun came out.",
                       "After a while, the sun came out again."],
        "after": ["They saw a big rainbow in the sky.",
                  "They went back to play {game} until dinner."],
        "moral": ["Patience is a good thing.",
                  "Friends help each other."],
    },
    {  # a stuck animal
        "event": ["{He} saw {a_animal} stuck behind a fence.",
                  "{He} heard a small cry. It was {a_animal} in a hole."],
        "problem": ["The {animal} was stuck and could not get out.",
                    "The {animal} tried and tried, but it could not get out."],
        "ask": ['"Are you okay?" asked {N}.',
                '"Can I help you?" {N} said.'],
        "reply": ['"I am scared," said the {animal}.',
                  '"Yes, please help me," said the little {animal}.'],
        "action": ["{N} had an idea.",
                   "{N} moved slowly and carefully.",
                   "{N} called {F}, and they helped together."],
        "resolution": ["Soon, the {animal} was free.",
                       "With a little pull, the {animal} came out."],
        "after": ["The {animal} {move} around {N} and {sound}.",
                  "The {animal} was safe, and it {sound}."],
        "moral": ["Being brave is good when others need help.",
                  "Small friends can do big things."],
    },
    {  # something fell in the water
        "event": ["{He} played with {his} {oadj} {obj} by the water.",
                  "{He} took {his} {oadj} {obj} to the pond."],
        "problem": ["{N} dropped the {obj} and it fell in the water.",
                    "The {obj} slipped and fell into the water."],
        "ask": ['"Can you help me?" {N} asked {his} {fam}.',
                '"My {obj}!" cried {N}. "What can I do?"'],
        "reply": ['"Do not worry," said {his} {fam}. "I will help."',
                  '"Stay here where it is safe," said {his} {fam}.'],
        "action": ["{His} {fam} got a long stick.",
                   "{His} {fam} reached out slowly.",
                   "{N} watched and waited."],
        "resolution": ["{His} {fam} got the {obj} out of the water.",
                       "At last, the {obj} was back on the grass."],
        "after": ["The {obj} was wet, but it was fine.",
                  '"Thank you!" said {N}. {He} gave {his} {fam} a big hug.'],
        "moral": ["It is good to ask for help.",
                  "It is good to be careful near the water."],
    },
]

FEEL_LINES = [
    "{N} felt {bad}.",
    "{N} did not know what to do.",
    "{N} looked around and thought hard.",
]

ENDINGS = [
    "{N} felt {good}.",
    "{N} smiled a big smile.",
    "That night, {N} went to bed with a happy heart.",
    "{N} went home and told {his} {fam} all about it.",
    "{His} {fam} gave {him} a big hug.",
    "{N} was proud of {him}self.",
    "They all had {food} and laughed together.",
]

MORAL_INTRO = [
    "{N} learned that {m}",
    "The moral of the story is: {M}",
    "{N} knew that {m}",
    "And so {N} learned a lesson. {M}",
]

def pick_time(r):
    return r.choice(TIMES)


def moral(c, m=None):
    if m is None:
        m = c.r.choice(MORALS)
    t = c.r.choice(MORAL_INTRO)
    if "{m}" in t:
        low = m[0].lower() + m[1:]
        # keep capitalized words like names
        return c.fill(t.replace("{m}", low).replace("{M}", m))
    return c.fill(t.replace("{M}", m))


def story_standard(c):
    r = c.r
    arc = r.choice(ARCS)
    s = [c.pick(OPENINGS)]
    for t in r.sample(INTROS, r.randint(1, 2)):
        s.append(c.fill(t))
    setting = r.choice(SETTINGS).replace("{time}", pick_time(r))
    if not setting.startswith(("One", "Later", "The next")) or \
            "{place}" not in setting:
        s.append(c.fill(setting))
        setting = pick_time(r) + ", {N} went to {place}."
    s.append(c.fill(setting))
    s.append(c.pick(arc["event"]))
    s.append(c.pick(arc["problem"]))
    if r.random() < 0.5:
        s.append(c.pick(FEEL_LINES))
    s.append(c.pick(arc["ask"]))
    s.append(c.pick(arc["reply"]))
    for t in r.sample(arc["action"], r.randint(1, 2)):
        s.append(c.fill(t))
    s.append(c.pick(arc["resolution"]))
    s.append(c.pick(arc["after"]))
    s.append(c.pick(ENDINGS))
    if r.random() < 0.75:
        m = r.choice(arc["moral"] + [r.choice(MORALS)])
        s.append(moral(c, m))
    return s


def story_animal(c):
    """Story with an animal as the main character."""
    r = c.r
    an = c.pet_name
    s = []
    s.append("Once upon a time, there was {} named {}.".format(
        a_an(c.aadj + " " + c.animal), an))
    s.append(r.choice([
        "{a} lived {p} {pl}.".format(a=an, p=c.prep, pl=c.place),
        "{a} liked to play all day.".format(a=an),
        "Every morning, {a} {s}.".format(a=an, s=c.sound),
        "{a} was very {g}.".format(a=an, g=c.good),
    ]))
    s.append(r.choice([
        "{t}, {a} wanted to find a friend.",
        "{t}, {a} saw {ao} on the grass.",
        "{t}, {a} went for a walk to {pl2}.",
        "{t}, {a} felt {b} and alone.",
    ]).format(t=pick_time(r), a=an, ao=a_an(c.oadj + " " + c.obj),
              pl2=c.place2, b=c.bad))
    s.append(r.choice([
        "{a} {m} and {m} until {it} met {n}.",
        "On the way, {a} met a {k} named {n}.",
        "Then {a} saw {n} playing with {ao}.",
    ]).format(a=an, m=c.move, it="it", n=c.name, k=c.kind,
              ao=a_an(c.obj)))
    s.append(c.fill('"Hello, little {animal}," said {N}. "What is your name?"'))
    s.append('"My name is {}," said the {}.'.format(an, c.animal))
    s.append(r.choice([
        '"Do you want to be my friend?" asked {n}.',
        '"Do you want to play {g}?" asked {n}.',
        '"Are you hungry?" asked {n}.',
    ]).format(n=c.name, g=c.game))
    s.append(r.choice([
        '"Yes!" said {a}.',
        '"Yes, please," said {a}.',
        '{a} {s} and nodded.',
    ]).format(a=an, s=c.sound))
    s.append(c.pick([
        "{N} and {pet} played together all day.",
        "{N} gave {pet} {food}, and {pet} ate every bite.",
        "They went to {place2} and played {game}.",
        "{N} and {pet} ran and laughed in the sun.",
    ]))
    if r.random() < 0.6:
        trouble = r.choice([
            ("But then, it got dark and {pet} was scared.",
             "{N} was brave. {He} stayed with {pet} and held {pet} close."),
            ("But then, a big dog came and barked at {pet}.",
             "{N} stood in front of {pet} and said, \"Go away, big dog!\""),
            ("But then, {pet} fell into a hole.",
             "{N} was brave and helped {pet} out."),
            ("But then, {pet} got lost in the tall grass.",
             "{N} called {his} {fam}, and {famhe} helped find {pet}."),
        ])
        s.append(c.fill(trouble[0]))
        s.append(c.fill(trouble[1]))
    s.append(c.pick([
        "{pet} was so happy to have a new friend.",
        "From that day on, {N} and {pet} were best friends.",
        "{pet} {sound} with joy.",
        "{N} took {pet} home, and {his} {fam} said {pet} could stay.",
    ]))
    if r.random() < 0.7:
        s.append(moral(c, r.choice([
            "Friends help each other.",
            "Good friends are the best treasure.",
            "It is good to be kind to others.",
            "It is nice to share what you have.",
            "Small friends can do big things.",
            "You can be brave even when you are scared.",
        ])))
    return s


def story_dialogue(c):
    """A short story carried mostly by dialogue between two friends."""
    r = c.r
    s = [c.pick([
        "Once upon a time, {N} and {F} were best friends.",
        "Once upon a time, there were two friends, {N} and {F}.",
        "Once upon a time, {N} and {F} lived on the same street.",
    ])]
    s.append(c.fill(r.choice(SETTINGS).replace("{time}", pick_time(r))))
    s.append(c.pick([
        "{N} had {a_adj_obj}.",
        "{N} brought {a_adj_obj} to play with.",
        "{F} saw that {N} had {a_adj_obj}.",
    ]))
    s.append(c.pick([
        '"Can I play with your {obj}?" asked {F}.',
        '"That is a nice {obj}," said {F}. "Can I try it?"',
    ]))
    if r.random() < 0.5:
        s.append(c.pick([
            '"No, it is mine," said {N}.',
            '"No, I want to play with it," said {N}.',
        ]))
        s.append(c.pick([
            "{F} was sad and walked away.",
            "{F} felt {bad} and sat down.",
        ]))
        s.append(c.pick([
            "{N} looked at {F} and felt bad.",
            "Then {N} saw that {F} was sad.",
        ]))
        s.append(c.pick([
            '"I am sorry," said {N}. "We can play with it together."',
            '"Wait, {F}!" said {N}. "Let us share."',
        ]))
        s.append(c.pick([
            "{F} smiled, and they played with the {obj} together.",
            '"Thank you!" said {F}. They had so much fun.',
        ]))
        s.append(c.pick([
            "{N} learned that sharing is better than keeping things to yourself.",
            "The moral of the story is: Sharing makes everyone happy.",
            "{N} felt {good}. Playing together was more fun.",
        ]))
    else:
        s.append(c.pick([
            '"Yes, you can," said {N}. "Let us play together."',
            '"Sure!" said {N}. "Here you go."',
        ]))
        s.append(c.pick([
            "They played with the {obj} {prep} {place} all day.",
            "They took turns with the {obj} and laughed a lot.",
        ]))
        s.append(c.pick([
            "Then a {animal} came and {sound}.",
            "Then they saw {a_adj_animal} watching them.",
        ]))
        s.append(c.pick([
            '"Look!" said {F}. "The {animal} wants to play too!"',
            '"Hello, {animal}!" said {N}. "Do you want to play?"',
        ]))
        s.append(c.pick([
            "The {animal} {move} after the {obj}, and everyone laughed.",
            "So the three of them played until the sun went down.",
        ]))
        s.append(c.pick([
            "It was the best day ever.",
            "{N} and {F} went home tired and {good}.",
            "They could not wait to play again the next day.",
        ]))
    return s


def story_lesson(c):
    """A child ignores advice, has a small accident, and learns."""
    r = c.r
    s = [c.pick(OPENINGS[:6])]
    s.append(c.pick([
        "{He} liked to {act}, but {he} did not like to listen.",
        "{He} was a good {kind}, but sometimes {he} did not listen.",
        "{He} always wanted to do things fast.",
    ]))
    s.append(c.fill(r.choice(SETTINGS[2:]).replace("{time}", pick_time(r))))
    warn, oops, help = r.choice([
        ('{His} {fam} said, "Do not go near the water, {N}."',
         "{He} went too close to the water, slipped, and got all wet and cold.",
         "{His} {fam} came fast, wrapped {him} in a warm towel, and gave {him} a hug."),
        ('{His} {fam} said, "Do not climb the big tree, {N}. It is not safe."',
         "{He} climbed the big tree and got stuck on a high branch.",
         "{His} {fam} came with a ladder and helped {him} down."),
        ('{His} {fam} said, "Hold my hand, {N}, and stay close."',
         "{He} ran off to look at a {color} bird and got lost.",
         "{His} {fam} looked and looked, and at last {famhe} found {him}."),
        ('{His} {fam} said, "Please be careful with your {obj}."',
         "{He} threw the {obj} too hard, and it broke.",
         "{His} {fam} sat with {him} and helped {him} fix the {obj}."),
        ('{His} {fam} said, "Walk, do not run, {N}."',
         "{He} ran too fast, fell down, and hurt {his} knee.",
         "{His} {fam} helped {him} up and cleaned {his} knee."),
    ])
    s.append(c.fill(warn))
    s.append(c.pick([
        "But {N} did not listen.",
        "{N} said, \"Okay,\" but {he} did not listen.",
        "{N} nodded, but soon {he} forgot.",
    ]))
    s.append(c.fill(oops))
    s.append(c.pick([
        "{N} started to cry.",
        "{N} felt {bad} and very sorry.",
        "{N} called out for {his} {fam}.",
    ]))
    s.append(c.fill(help))
    if r.random() < 0.5:
        s.append(c.fill('"I am sorry I did not listen," said {N}.'))
        s.append(c.fill('"It is okay," said {his} {fam}. "I am glad you are safe."'))
    else:
        s.append(c.fill('"I will listen next time," said {N}.'))
        s.append(c.fill('"I know you will," said {his} {fam} with a smile.'))
    s.append(c.pick([
        "{N} learned that it is good to listen to {his} {fam}.",
        "The moral of the story is: Listen to the people who love you.",
        "From that day on, {N} always listened.",
    ]))
    return s


STORY_KINDS = [(story_standard, 4), (story_animal, 2), (story_dialogue, 2),
               (story_lesson, 2)]


def make_story(r):
    total = sum(w for _, w in STORY_KINDS)
    x = r.randrange(total)
    for fn, w in STORY_KINDS:
        if x < w:
            break
        x -= w
    c = Cast(r)
    sents = fn(c)
    # drop immediate duplicate sentences
    out = []
    for t in sents:
        if not out or out[-1] != t:
            out.append(t)
    text = " ".join(out)
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--bytes", type=int, default=400000,
                    help="stop once the output reaches this many bytes")
    args = ap.parse_args()

    r = random.Random(args.seed)
    seen = set()
    parts = []
    size = 0
    tries = 0
    while size < args.bytes and tries < args.bytes:
        tries += 1
        st = make_story(r)
        if st in seen:
            continue
        seen.add(st)
        st.encode("ascii")  # fail loudly on any non-ASCII character
        parts.append(st)
        size += len(st) + 2
    out = "\n\n".join(parts) + "\n"
    sys.stdout.write(out)


if __name__ == "__main__":
    main()
