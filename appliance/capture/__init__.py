"""Frame sources (UVC microscope, directory replay, synthetic skin) and the frame quality gate."""
