"""The documented script path of the photo -> anime CLI: `python translate/translate.py ...` runs
translate/photo2anime.py (`python -m translate.photo2anime` is the same; its flags and usage).

This file holds no code of its own: as a script it would otherwise put translate/ first on
sys.path and shadow the `translate` package; cliboot puts the checkout there instead.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

if __name__ == "__main__":
    from absl import flags

    from translate import photo2anime

    __doc__ = photo2anime.__doc__  # usage text of --help
    flags.adopt_module_key_flags(photo2anime)  # --help lists photo2anime's flags
    photo2anime.run()
