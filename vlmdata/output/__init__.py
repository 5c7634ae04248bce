"""Everything written under out/NAME/: the writer, the output guard, the manifest, card, report and exports."""
