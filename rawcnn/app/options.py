"""What cli.py builds options from when it is imported: the training recipe's fields and names.

It imports only rawcnn.training.recipes, which loads nothing heavy, so that `rawcnn --help` stays quick.
"""
import dataclasses

from rawcnn.training.recipes import RECIPES, Recipe, flag

RECIPE_FIELDS = dataclasses.fields(Recipe)  # each with metadata help, range (a recipes.Range) or choices
RECIPE_NAMES = tuple(RECIPES)

__all__ = ["RECIPE_FIELDS", "RECIPE_NAMES", "flag"]
