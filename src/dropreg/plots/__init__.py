"""The drawing behind `python -m dropreg.figures`, one module per family of figures; the
registry (`dropreg.figure_kinds`) names each figure's function here."""
