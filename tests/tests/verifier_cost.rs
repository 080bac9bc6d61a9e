//! The XDP program passes the verifier, and how much of its budget
//! (1,000,000 processed instructions) that takes: a regression guard for
//! changes that make verification explode (loops, branchy state).
use xdpgate::dataplane::Dataplane;

#[test]
fn main_program_verifies_within_budget() {
    let mut dp = Dataplane::load().expect("the verifier accepts the program");
    let info = dp
        .main_program()
        .expect("main program")
        .info()
        .expect("program info");
    let insns = info
        .verified_instruction_count()
        .expect("kernel reports it");
    println!("verified instructions: {insns} of 1000000");
    // Half the budget: beyond it, a small change could tip it over.
    assert!(insns < 500_000, "{insns} verified instructions");
}
