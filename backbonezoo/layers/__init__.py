"""Small shared building blocks that timm.layers does not already have."""
