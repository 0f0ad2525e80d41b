"""Recipes of the models the project ships (library of tools/train_pretrained.py): each goes from
the team's shared data to a model folder with its MODEL_CARD.md inside its package's
`pretrained/` folder."""
