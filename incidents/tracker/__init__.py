"""Issue trackers the app exports action items to (Shortcut): thin clients and webhook parsing, no database."""
