"""Around the generator: official templates, human-centred ROI clips, and the paste-back into the footage."""
