from chargeback.cli import main_entry

main_entry()
