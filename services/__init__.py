"""eraser: finds re-posts of registered protected images in an upload stream and drives removal."""
