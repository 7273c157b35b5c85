"""Models (a plug-in family): each turns a 2D segment file into a stereo segment file."""
