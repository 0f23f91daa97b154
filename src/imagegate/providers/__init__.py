"""Image providers behind one protocol, and the router that picks among them."""
