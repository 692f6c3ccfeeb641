"""Model health over time: the champion on what people watched since its snapshot, drift of the
lists it now sees, and the live service's figures (docs/design.md, "Monitoring")."""
