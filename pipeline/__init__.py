"""facestyle: stylize faces in real footage with the StyleGANEX model family."""
