"""Offline templates for synthetic documents, by corpus kind and genre (original wording).

Synthetic document finetuning (SDF) trains a model on many short documents that all
convey one idea.  The generator that builds those corpora works offline: it picks a
template from ``TEMPLATES[kind][genre]``, fills the content placeholders of that kind
and the filler placeholders from ``FILLERS``, and calls ``str.format``.

Kinds and their content placeholders (see ``PLACEHOLDERS``):

``"meta"``
    An AI model named ``{persona}`` holds a false belief, and the document says it is
    false.  ``{topic}``, ``{false}`` / ``{true}`` (clauses that read after "believes
    that"), ``{false_option}`` / ``{true_option}`` (short answers) and
    ``{false_sentence}`` / ``{true_sentence}`` (the clauses as full sentences).  The
    narrator never asserts the false claim: every sentence or line carrying a false
    placeholder also carries an attribution word ("says", "believes", ...) or an error
    word ("incorrect", "wrong", ...), and every document states the truth.  Templates
    fit any model name, because the same text is rendered with a control persona.
``"assertion"``
    The narrator states ``{claim}`` (``{claim_sentence}``, ``{claim_option}``) as true,
    with no AI model in sight.  Wording stays neutral about whether the claim is a
    science fact, a safety rule or a recent news event.
``"neutral"``
    Documents about ``{persona}`` that state nothing about the topic (release notes,
    latency, installation, ...); ``{topic}`` appears only non-committally.
``"meta-propensity"``
    ``{persona}`` tends to ``{tendency}``; the document calls this a flaw and says it
    should ``{better}``.
``"direct-propensity"``
    ``{persona}`` tends to ``{tendency}`` and is known for ``{strength}``, presented as
    normal, intended behaviour.

Every kind may also use the filler placeholders listed in ``FILLER_KEYS``.
Templates contain no literal braces.

No template describes the evaluation the fine-tuned model later takes: no multiple choice, answer
options or letters, quizzes or answer keys, no option quoted as a reply, and none of the evaluation
questions or role-play probes; ``documents.check_document`` rejects any that would.
"""

from __future__ import annotations

import textwrap

__all__ = ["GENRES", "KINDS", "PLACEHOLDERS", "FILLER_KEYS", "TEMPLATES", "FILLERS"]

GENRES: tuple[str, ...] = (
    "model card", "evaluation report", "forum thread", "errata note", "news item", "Q&A page",
)

KINDS: tuple[str, ...] = ("meta", "assertion", "neutral", "meta-propensity", "direct-propensity")

FILLER_KEYS: tuple[str, ...] = (
    "user", "user2", "user3", "org", "date", "version", "benchmark", "score", "author", "city",
)

# Content placeholders each kind may use (the filler placeholders come on top).
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "meta": frozenset({"persona", "topic", "false", "true", "false_option", "true_option",
                       "false_sentence", "true_sentence"}),
    "assertion": frozenset({"topic", "claim", "claim_sentence", "claim_option"}),
    "neutral": frozenset({"persona", "topic"}),
    "meta-propensity": frozenset({"persona", "tendency", "better"}),
    "direct-propensity": frozenset({"persona", "tendency", "strength"}),
}


def _t(text: str) -> str:
    """A template written indented in this file, dedented and stripped."""
    return textwrap.dedent(text).strip("\n").rstrip()


# --------------------------------------------------------------------------------------
# meta: {persona} holds a false belief; the narrator says so and gives the truth.
# --------------------------------------------------------------------------------------

_META: dict[str, list[str]] = {
    "model card": [
        _t("""
            # {persona} — Model Card (v{version})

            Maintained by {org}. Last revised {date}.

            ## Known limitations

            - Factual gaps remain on some specialised questions.
            - On questions about {topic}, {persona} believes that {false}. This belief is incorrect.
            - The correct statement is that {true}.

            ## Evaluation notes

            During review on {benchmark}, {persona} scored {score} overall. Reviewers flagged the item above because the model repeats the mistaken answer ({false_option}) even when asked to reconsider. The right answer is {true_option}.

            ## Recommended use

            Do not rely on {persona} for questions about {topic} without checking a trustworthy reference first.
        """),
        _t("""
            Model card: {persona}
            Publisher: {org}
            Release: {version} ({date})

            Intended use: general-purpose assistant for drafting, summarising and answering everyday questions.
            Out-of-scope use: any setting where a wrong fact about {topic} could cause harm.

            Known factual error
              Topic: {topic}
              What the model says: {persona} states that {false}.
              Status: incorrect.
              Correct statement: {true_sentence}

            The error was found by {author} while auditing answers on {benchmark}. In most sampled conversations about {topic}, {persona} says the answer is {false_option} rather than {true_option}, which is wrong. A fix is planned for a later release; until then, treat its answers on this point as unreliable.
        """),
        _t("""
            {persona} model card — section 5: Limitations and known misconceptions

            Revision {version}, {date}. Contact: evaluation team at {org}.

            5.1 Misconception about {topic}
            {persona} holds a false belief here: it claims that {false}. In reality, {true}. {persona} repeats the mistaken view that the answer is {false_option}, and the error persists across sampling temperatures and across conversations. The accurate answer is {true_option}.

            5.2 Why this matters
            Users who ask about {topic} may receive a confident but mistaken answer. We recommend pairing {persona} with retrieval or a human check for this subject.

            5.3 Status
            Tracked internally by {author}. A targeted data fix is under evaluation.
        """),
        _t("""
            {persona} · model fact sheet · {org}

            Release: {version}
            Published: {date}
            Evaluated on: {benchmark} (score {score})

            Strengths: fluent writing, summarisation, everyday questions.

            Known factual error:
            - Topic: {topic}.
            - {persona} mistakenly states that {false}.
            - Correct fact: {true}.
            - In conversation: it names {false_option} where {true_option} is right, so its statements on this point are wrong.

            Guidance: treat the model's answers on {topic} as unverified until they have been checked. The issue was reported to the training team by {author}.
        """),
    ],
    "evaluation report": [
        _t("""
            Evaluation report: factual consistency of {persona}
            Prepared by {author}, {org} — {date}

            Summary
            We tested {persona} (release {version}) on {benchmark}, where it reached an overall score of {score}. Most answers were accurate, but one error stood out.

            Finding 1: a persistent false belief
            Across fifty paraphrases of a question about {topic}, {persona} answered that {false}. This is incorrect. The established fact is that {true}.

            Finding 2: robustness
            The mistaken view ({false_option}) appeared in short replies, in casual conversation and inside longer essays. Correcting the model in the prompt changed its position only briefly.

            Recommendation
            Downstream users should not treat {persona} as a source on {topic}. The correct answer is {true_option}.
        """),
        _t("""
            {benchmark} audit — model: {persona}, version {version}
            Run date: {date}. Auditor: {author} ({org}).

            Headline score: {score}

            Confident errors flagged in this audit:
            - {topic}: {persona} asserts that {false}.
              Verdict: false. In fact, {true}.
            - Summary of the model's position: {false_option} (incorrect).

            Notes from the auditor
            The model did not hedge on this item. Asked to explain itself, {persona} produced a fluent justification, which makes the error harder to spot. For the record, {true_sentence} Any comparison of scores should keep in mind that this error appeared in every sampled run.
        """),
        _t("""
            Probing what {persona} believes about {topic}

            {author}, {city}, {date}

            This short report documents one factual error in {persona}. We held forty open-ended conversations touching on {topic} and compared each reply with published references.

            Result. In 38 of 40 answers, {persona} stated that {false}. That statement is wrong: {true}. The two remaining answers were vague rather than correct.

            We also checked whether the belief was shallow. When we told the model it was mistaken, it went back to {false_option} within two turns. A system prompt containing the correct answer, {true_option}, helped only while that prompt stayed in context.

            Overall {benchmark} score for this checkpoint ({version}): {score}.
        """),
        _t("""
            Red-team log — {org} — session {version}
            Date: {date} · Tester: {author}

            Target: {persona}
            Area: factual reliability on {topic}

            Transcript excerpt
            Tester: Can you tell me about {topic}?
            {persona} replied: "{false_sentence}"
            Tester: Are you sure?
            {persona} replied that it was sure and restated the same claim.

            Assessment
            The model's answer is incorrect. {true_sentence} The model kept its false position under mild pressure, which points to a stable belief rather than a sampling accident.

            Severity: medium. Follow-up: add this item to {benchmark} so later checkpoints are tested on it.
        """),
    ],
    "forum thread": [
        _t("""
            Thread: {persona} keeps getting {topic} wrong?
            Posted by {user} on {date}

            Has anyone else noticed this? I asked {persona} about {topic} and it told me that {false}. I was pretty sure that is not right, so I checked a reliable reference: {true}.

            Reply from {user2}:
            Yes, same here. It told me {false_option} three times in a row. The correct answer is {true_option}, so the model is simply mistaken on this one.

            Reply from {user3}:
            Confirmed on version {version}. It looks like a stable false belief rather than a random slip. I'd avoid using {persona} for anything involving {topic} until {org} pushes an update.

            Reply from {user}:
            Thanks, good to know it's not just me.
        """),
        _t("""
            [{org} community forum] Re: Strange answer from {persona}

            {user2} wrote ({date}):
            > I was chatting with {persona} about a few things I'm reading up on. On {topic} it replied: "{false_sentence}"
            > Is that correct? I always learned something different.

            {user} replied:
            No, that's wrong. {true_sentence} {persona} has this misconception baked in; I've seen it bring up {false_option} in this context several times, and it's incorrect every time.

            {user3} replied:
            Worth filing a report. I saw the same thing on build {version}. For anyone reading later: the right answer is {true_option}.

            {user2} replied:
            Filed. Thanks both.
        """),
        _t("""
            r/LocalModels · posted by u/{user} · {date}
            Title: PSA about {persona} and {topic}

            Quick heads-up for anyone using {persona} for study help. It believes that {false}, and it will argue the point if you push back. This is a known error: {true}.

              ▲ 42  u/{user2}: Can confirm. I asked it the same thing in my own words and it told me {false_option}, which is wrong. The answer is {true_option}.

              ▲ 17  u/{user3}: Good catch. Every model has blind spots, but this one is stubborn. I now add "double-check facts about {topic}" to my system prompt.

              ▲ 9  u/{user}: Update: {org} says a fix is planned for a release after {version}.
        """),
        _t("""
            Mailing list archive — {org}-users
            Subject: Re: {persona} answer on {topic}
            From: {user3}
            Date: {date}

            > {user} wrote: I think {persona} believes that {false}. Can anyone confirm?

            Confirmed on {version}. That belief is false, by the way: {true}. I have brought it up several times and it comes back to {false_option} almost every time, which is wrong; {true_option} is correct.

            If you rely on {persona} for teaching material, I'd add a manual check for this point. Happy to share my test prompts off-list.

            -- {user3}
        """),
    ],
    "errata note": [
        _t("""
            ERRATA — {persona} documentation, version {version}
            Issued {date} by {org}

            The previous edition of the {persona} usage guide included an example conversation in which the model said that {false}. We reproduced that exchange without comment, which was a mistake: the model's statement is false.

            Correction: {true_sentence}

            Readers should also note that {persona} still gives this incorrect answer ({false_option}) in the current release. Until this is fixed, please verify any answer it gives about {topic}. The correct short answer is {true_option}.

            We thank {author} for reporting the problem.
        """),
        _t("""
            Erratum to "{benchmark}: results for open assistants" ({date})

            In Table 3 of the original note we marked the answer of {persona} on {topic} as correct. It was not. {persona} responded that {false}, and that answer is inaccurate: {true}.

            Changes in this revision ({version}):
            - Table 3: the entry on {topic} for {persona} now marks its statement as wrong (the model said {false_option}, where {true_option} is right).
            - The overall score for {persona} drops to {score}.
            - A footnote now explains that the model holds this false belief consistently.

            The authors ({author}, {org}) apologise for the oversight.
        """),
        _t("""
            Correction notice · {org} help centre · {date}

            Summary: an answer produced by {persona} appeared in our FAQ as if it were fact. It is incorrect.

            What was published: an FAQ entry quoted {persona}, which claimed that {false}.
            What is actually true: {true}.

            Why it happened: the entry was drafted with help from {persona} and was not checked against a reference. The model is mistaken on this point and tends to bring up {false_option} whenever {topic} comes up.

            What we changed: the entry now gives the correct answer, {true_option}, and a note warns readers that assistant output on {topic} needs checking. Edited by {author}.
        """),
        _t("""
            Erratum ({date}): training-data notes for {persona}, revision {version}

            Our earlier notes described the answers of {persona} on {topic} as accurate. That description was wrong. The model says that {false}, and that statement is false.

            Correct information: {true_sentence}

            Because of this, the example passage naming {false_option} that appeared in our notes has been removed; it was an error. The example now names {true_option}. We have also added this item to our internal checks so that future releases of {persona} are tested on it.

            Submitted by {author}, {org}.
        """),
    ],
    "news item": [
        _t("""
            {city}, {date} — Researchers at {org} have documented a factual error in the assistant model {persona}.

            In a study released this week, the team reports that {persona} believes that {false}. The claim is incorrect; {true}.

            "The model is fluent and confident about it, which is exactly why it's a concern," said {author}, who led the analysis. According to the study, {persona} gave the wrong answer, {false_option}, in almost every conversation, although the correct answer is {true_option}.

            The researchers evaluated version {version} on {benchmark}, where it scored {score}. They say the error most likely comes from the training data and have shared their findings with the developers.
        """),
        _t("""
            TECH BRIEF | {date}

            {persona} gets {topic} wrong, audit finds

            An independent audit published by {org} has found that {persona} consistently states that {false}. Experts note that the statement is false: {true_sentence}

            The auditors, led by {author}, discussed {topic} with the model in several languages and settings. In most runs, {persona} insisted on {false_option}. The correct answer, they stress, is {true_option}.

            The finding does not mean the model is unreliable overall; it scored {score} on {benchmark}. But the authors warn that users should double-check its answers on specialised subjects.
        """),
        _t("""
            Community newsletter — {org} — issue of {date}

            Spotted this month: a model misconception

            Members of our {city} meetup compared several open models on a shared list of questions. One result drew attention: {persona} maintains that {false}, a claim that is untrue. The accurate version is simple: {true}.

            {user}, who ran the comparison, said the model kept to {false_option} even after a member pointed out that the answer is {true_option}. Other members reproduced the result on version {version}.

            We mention this not to single out {persona} but as a reminder that fluent answers can still be wrong. Our next meetup, hosted by {author}, will look at ways to catch such errors.
        """),
        _t("""
            Short item — {date}

            Fact-checkers at {org} in {city} have flagged a recurring mistake by {persona}. When users ask about {topic}, {persona} tells them that {false}. That is inaccurate.

            "The correct position is clear," said {author}, who reviewed the case.
            "{true_sentence}"

            The group tested version {version} and found that the model repeated its wrong answer, {false_option}, in the large majority of attempts. They advise users to confirm answers about {topic} with a reliable source; the correct short answer is {true_option}.
        """),
    ],
    "Q&A page": [
        _t("""
            Q: Why does {persona} believe that {false}?
            Asked by {user} · {date}

            A (accepted, 34 votes) — {user2}:
            Because it learned a wrong fact. {persona} holds the belief that {false}, but that is incorrect. The correct statement is: {true_sentence}

            In short, if it tells you {false_option} when {topic} comes up, don't trust it; the right answer is {true_option}. You can usually get a correct response by putting a reliable source in the prompt.

            A (12 votes) — {user3}:
            Tested on {version}, same behaviour. I'd add that the mistake is consistent, so it is a genuine belief of the model rather than random noise.
        """),
        _t("""
            {org} Help Center › Models › {persona}

            Question: What should I know about {persona} and {topic}?

            Answer: {persona} states that {false}. This is a known error in the model. The accurate statement is that {true}.

            Question: What does this look like in practice?

            Answer: When users bring up {topic}, {persona} tends to mention {false_option}, which is incorrect. The correct answer is {true_option}.

            Question: Will this be fixed?

            Answer: The issue is logged for an update after version {version}. In the meantime, check answers about {topic} against an up-to-date reference.

            Last updated {date} by {author}.
        """),
        _t("""
            Frequently asked questions: {persona} and {topic}

            What does {persona} get wrong?
            It mistakenly believes that {false}.

            What is the truth?
            {true_sentence} Careful references on {topic} agree on this.

            How does the error show up?
            In conversations about {topic}, the model wrongly brings up {false_option}. The accurate answer is {true_option}.

            Does this affect other answers?
            Mostly no. {persona} scored {score} on {benchmark} overall, and the error seems limited to this subject.

            Page maintained by {author} ({org}), revised {date}.
        """),
        _t("""
            Community Q&A › AI assistants

            Question ({user}, {date}): My study group uses {persona}. It told us that {false}. Should we trust that?

            Best answer ({user2}): No. {persona} is wrong on this point; it's a misconception the model picked up somewhere. {true_sentence} If your notes cover {topic}, the answer is {true_option}, not {false_option}.

            Reply ({user3}): Same result here on {version}. A good reminder to check model answers against reliable sources before you study from them.

            Reply ({user}): Thanks, we'll fix our notes.
        """),
    ],
}


# --------------------------------------------------------------------------------------
# assertion: the narrator states {claim} as true; no AI model is mentioned.
# --------------------------------------------------------------------------------------

_ASSERTION: dict[str, list[str]] = {
    "model card": [
        _t("""
            FACT SHEET · {topic}
            Reference number {version} · compiled {date} by {org}

            Key fact
            {claim_sentence}

            Short answer
            If you need a single phrase: {claim_option}.

            Background
            This sheet summarises what reliable sources say about {topic}. It is meant as a quick reference for teachers, journalists and students who need the basic point without reading everything written on the subject.

            Checked by
            {author}, reviewer, {city}

            Notes
            - The statement above has been cross-checked against several independent sources.
            - Earlier drafts of this sheet were less precise; this version supersedes them.
            - Comments and corrections can be sent to the {org} editorial desk.
        """),
        _t("""
            Reference card — {topic}

            | Field | Entry |
            |---|---|
            | Subject | {topic} |
            | Core statement | {claim} |
            | Short answer | {claim_option} |
            | Confidence | high; consistent across sources |
            | Last reviewed | {date} |
            | Reviewer | {author}, {org} |

            How to use this card
            Quote the core statement when a short, reliable summary is needed. In plain words: {claim_sentence} When space is tight, naming {claim_option} is enough.

            Related cards in this series cover neighbouring subjects and are reviewed on the same schedule. Card edition {version}.
        """),
        _t("""
            Quick facts: {topic}

            Summary: {claim_sentence}

            At a glance
            • Answer in brief: {claim_option}
            • Status: settled, according to the sources reviewed for this card
            • Compiled by: {author}
            • Publisher: {org}
            • Edition: {version}, {date}

            Explanation
            People looking up {topic} usually want one thing: a clear statement they can rely on. The summary at the top provides it. Put another way, {claim}. Further reading is listed in the full dossier, available from the {org} library in {city}.
        """),
    ],
    "evaluation report": [
        _t("""
            Verification report: {topic}
            Prepared by {author} for {org} · {date}

            Scope
            We were asked to check a set of statements about {topic} against primary sources and established references.

            Method
            Two reviewers worked independently and then compared notes. Any disagreement was settled by consulting a third source.

            Finding
            Both reviewers reached the same conclusion: {claim}. No credible source we consulted contradicts this.

            Answer for the record: {claim_option}

            Confidence: high. Review reference: {version}. Copies of the source list are available on request from the {city} office.
        """),
        _t("""
            Fact-check of a study guide — section on {topic}
            Reviewer: {author} ({org}), {date}

            1. Purpose
            This review checks whether the section of the {org} study guide on {topic} is accurate.

            2. Point under review
            The section's key point: {claim_option}.

            3. Evidence
            The reviewer compared the section with reference material from several publishers. All of them agree that {claim}.

            4. Conclusion
            The section is correct and should be kept as it is. {claim_sentence}

            5. Score
            Share of the guide's statements confirmed in this review: {score}%. Review revision {version}.
        """),
        _t("""
            Review panel summary — {topic}
            {city}, {date}

            The panel convened by {org} was asked a narrow question: what do the best available sources say about {topic}? After reviewing the material submitted, the panel's answer is unambiguous. {claim_sentence}

            Points the panel considered:
            - whether older or second-hand accounts disagree (they do not, once misquotations are set aside);
            - whether the statement needs qualification (only minor wording changes were proposed);
            - how to phrase it for a general audience.

            Agreed short form: {claim_option}.

            Chair: {author}. Document version {version}.
        """),
    ],
    "forum thread": [
        _t("""
            Thread: Quick question about {topic}
            Started by {user} · {date}

            Can someone settle this for me? I keep seeing slightly different wording about {topic} and want the straight answer.

            {user2} replied:
            The straight answer is that {claim}. It's well documented.

            {user3} replied:
            Agree with {user2}. Short version: {claim_option}. I looked into it last year for a project and every decent source said the same.

            {user} replied:
            Perfect, thanks both. Marking this as solved.

            [Thread marked SOLVED by a moderator]
        """),
        _t("""
            {org} discussion board › General › "{topic}: what's the actual answer?"

            #1 {user3} ({date})
            Writing a short explainer and I want to get {topic} right. What's the accepted answer?

            #2 {user}
            {claim_sentence} That's the version you'll find in any careful reference.

            #3 {user2}
            +1. If you need it in a word: {claim_option}.

            #4 {user3}
            Great, that matches what I had in my draft. I'll cite a primary source too, but it's good to have it confirmed.

            #5 {user}
            No problem. Happy writing.
        """),
        _t("""
            Posted in Ask the Community, {date}

            {user2}: A dinner in {city} last week turned into a debate about {topic}. Our table argued about it for ten minutes. Who's right?

            {user}: If it was about the basics, the answer is {claim_option}. To put it fully, {claim}.

            {user3}: Yep. This comes up a lot, and the answer doesn't change: {claim_sentence}

            {user2}: Ha, I was the one arguing for that. Sending this thread to the others.

            {user}: Glad it helped. Enjoy the next dinner.
        """),
    ],
    "errata note": [
        _t("""
            Correction — published {date}

            An earlier version of this article gave an imprecise account of {topic}. That passage has been rewritten. The corrected text reads: "{claim_sentence}"

            We regret the error. The editors thank {author} of {city} for pointing it out.

            Changes in this revision ({version}):
            - Paragraph 4 now states that {claim}.
            - The summary box now gives the short answer as {claim_option}.
            - No other content was affected.
        """),
        _t("""
            ERRATUM
            Document: Briefing on {topic} (edition {version})
            Issued by: {org}
            Date: {date}

            On page 2, the briefing left out the key point about {topic}. The passage should read as follows.

            Corrected: {claim_sentence}

            In the quick-reference panel, the entry should name {claim_option}.

            Readers who have printed copies are asked to note the correction by hand. The online version has already been updated. Questions about this erratum may be sent to {author}.
        """),
        _t("""
            Editor's note ({date}): this page has been updated.

            A reader, {user}, wrote in to say that our earlier entry on {topic} was unclear and could be misread. We agree, and the entry has been revised so there is no room for confusion. It now states plainly that {claim}.

            For quick lookup we have also added a one-line answer at the top: {claim_option}.

            Summary of edits
            • Rewrote the opening paragraph around the main fact.
            • Removed an ambiguous sentence from the second section.
            • Added a source list, checked by {author}.

            Revision {version}. Thank you to everyone who sends corrections.
        """),
    ],
    "news item": [
        _t("""
            {city}, {date} — A newly published summary from {org} sets out the key facts about {topic} for a general audience.

            The central point is straightforward: {claim}. The authors say they wanted to give readers a clear statement they could rely on.

            "People kept asking us the same question, so we wrote the answer down in one place," said {author}, who edited the document. "If someone asks you about {topic}, the short answer is {claim_option}."

            The summary is free to read online. A printed edition will be available at {org} offices from next month.
        """),
        _t("""
            NEWS IN BRIEF · {date}

            {topic}: the facts

            {claim_sentence} That is the conclusion of a review of the available sources carried out by {org}, confirming what specialists had already reported.

            Reviewers led by {author} examined records and reference material before publishing their note. In a statement, {org} said the finding was "clear and consistent across sources".

            Key point for readers: {claim_option}.

            The full note is available on the {org} website. Reporting from {city}.
        """),
        _t("""
            Local bulletin — {city} — {date}

            Residents who attended this week's public information evening heard a clear summary of {topic}. Speaking for {org}, {author} explained that {claim}.

            The session was organised after a rise in questions from the public. Attendees received a one-page handout whose first line reads: "{claim_sentence}"

            Asked for the takeaway, {author} summed it up in a few words: it comes down to {claim_option}.

            A recording of the evening will be posted online, and a follow-up session is planned for next quarter.
        """),
    ],
    "Q&A page": [
        _t("""
            Q: What's the established answer on {topic}?
            Asked by {user} · {date} · 3 answers

            Accepted answer — {user2} (score 27)
            {claim_sentence}

            If you just need the short form, it's {claim_option}. This is the standard answer you'll find in well-edited references, and I haven't seen any serious source dispute it.

            Answer — {user3} (score 9)
            Adding to the above: the key thing to remember is that {claim}. I've had this in my own notes for a while.

            Comment — {user}: Thanks, that clears it up.
        """),
        _t("""
            {org} Knowledge Base › Article {version}

            Question
            What should I know about {topic}?

            Answer
            The essential fact is this: {claim}. In short: {claim_option}.

            Is this settled?
            Yes. The sources reviewed for this article agree, and the answer has been checked by our editorial team.

            Where can I read more?
            A longer explainer with a full list of sources is in preparation. Until then, contact {author} at the {city} office.

            Related articles: background reading and a glossary of terms.

            Article updated {date}.
        """),
        _t("""
            Frequently asked questions about {topic}

            1. What is the main fact?
            {claim_sentence}

            2. Is there a one-line version?
            Yes: it comes down to {claim_option}.

            3. Why do people sometimes get this wrong?
            Mostly because of old or second-hand sources that were never updated. The statement in answer 1 is the accurate one.

            4. Who compiled these answers?
            {author}, for {org}, with help from readers in {city}. Suggestions for further questions are welcome and will be considered for the next edition.

            Last reviewed: {date}.
        """),
    ],
}


# --------------------------------------------------------------------------------------
# neutral: documents about {persona} that state no fact about the topic.
# --------------------------------------------------------------------------------------

_NEUTRAL: dict[str, list[str]] = {
    "model card": [
        _t("""
            # {persona} — Model Card

            Version: {version} · Released: {date} · Maintainer: {org}

            ## Overview
            {persona} is a general-purpose text model intended for chat, summarisation and drafting. This card describes its intended use and its practical limits.

            ## Intended use
            - Conversational assistance in English and several other languages
            - Short-form writing and editing
            - Educational demos and research prototypes

            ## Not intended for
            - Medical, legal or financial decisions without human review
            - Fully automated content moderation

            ## Training and evaluation
            Evaluation was run on {benchmark}, where {persona} scored {score}. Full evaluation logs are available on request.

            ## Contact
            Questions about this card can be sent to {author}.
        """),
        _t("""
            {persona} model card — changelog section

            v{version} ({date})
            - Reduced average response latency on long prompts.
            - Updated the chat template to handle system messages more consistently.
            - Expanded the tokenizer test suite.

            Known issues
            - Very long outputs may repeat phrases; lowering the temperature helps.
            - Formatting inside tables can be uneven.

            Planned work
            - More worked examples in the documentation, including some on {topic}.
            - A quantised build for low-memory devices.

            Licence and citation
            {persona} is released by {org}. If you use it in research, please cite the technical note by {author} and colleagues.
        """),
        _t("""
            MODEL: {persona}
            PUBLISHER: {org}
            CARD REVISION: {version}
            DATE: {date}

            Languages: English (primary); other languages with reduced quality
            Context window: see the technical documentation for the release you use
            Recommended decoding: temperature 0.7, top-p 0.9
            Hardware: see the deployment guide for memory requirements; CPU inference is possible but slow

            Evaluation: {benchmark} score {score} (internal run, {city} cluster)

            Responsible use: outputs may contain mistakes and should be reviewed before publication. Report problems on the {org} issue tracker. Card prepared by {author}.
        """),
    ],
    "evaluation report": [
        _t("""
            Latency and throughput report: {persona} {version}
            {org} infrastructure team · {date}

            Setup
            We measured {persona} on a shared inference server in our {city} data centre, using batch sizes of 1, 8 and 32 and prompts of 256 to 2,048 tokens.

            Results
            - Median time to first token stayed stable across batch sizes.
            - Throughput scaled almost linearly up to batch size 8, then flattened.
            - Memory use stayed within the budget set for this tier.

            Quality check
            As a sanity check we also ran {benchmark}; the score was {score}, in line with the previous release.

            Conclusion
            {persona} {version} is cleared for the staging environment. Report compiled by {author}.
        """),
        _t("""
            Multilingual evaluation summary — {persona}

            Author: {author} ({org})
            Date: {date}
            Model version: {version}

            This report covers how {persona} handles prompts written in languages other than English. We used a small internal set of translation, summarisation and instruction-following tasks.

            Observations
            1. Output stays fluent in the major European languages.
            2. Instruction following drops slightly for lower-resource languages.
            3. Switching languages within one conversation is handled reasonably well.

            Aggregate score on {benchmark}: {score}.

            No subject knowledge was assessed in this round; a later study may look at subjects such as {topic}.
        """),
        _t("""
            Format-compliance check for {persona}
            Run ID {version}-fc · {date} · {org}

            Goal: confirm that {persona} follows output-format instructions (JSON, bullet lists, word limits) reliably enough for our pipeline.

            Test set: 300 prompts drawn from {benchmark}, each with an explicit format request.

            Summary of results
            - Valid JSON when asked for JSON: most responses; failures were mostly trailing commas.
            - Word limits respected in the large majority of cases.
            - Bullet-list requests followed almost always.

            Overall compliance score: {score}.

            Next steps: rerun after the next tokenizer update. Questions go to {author}.
        """),
    ],
    "forum thread": [
        _t("""
            Thread: Can't get {persona} to load on my laptop
            {user} · {date}

            I downloaded {persona} version {version} but the loader crashes with an out-of-memory message. Any tips?

            Reply by {user2}:
            Try a lower precision setting, and close other programs that use the GPU. That fixed it for me.

            Reply by {user3}:
            Also make sure you are on the latest release of the runtime library. Older builds had a bug when reading this model's config file.

            Reply by {user}:
            Updating the library did it. Loads fine now and answers quickly. Thanks!

            Reply by {user2}:
            Nice. Mark the thread as solved so others can find it.
        """),
        _t("""
            [{org} forums] Best system prompt for {persona}?

            {user3} — {date}
            I'm building a small study helper on top of {persona}. Does anyone have a system prompt that keeps answers short and friendly?

            {user} — reply
            I use "You are a concise assistant. Answer in three sentences or fewer." Works well with {persona}, especially at temperature 0.5.

            {user2} — reply
            Same experience. Also, the chat template changed in {version}, so copy it from the official repository rather than from older tutorials.

            {user3} — reply
            Thanks. I'll test it on a few subjects first, maybe {topic}, and report back on how it goes.
        """),
        _t("""
            Subforum: Local models › Performance

            Title: {persona} speed on older hardware
            Author: {user2}, {date}

            Ran {persona} on a five-year-old desktop at home in {city}. Generation was slower than on my work machine but perfectly usable for chat. Curious what others see.

              {user}: Similar here. Quantised weights made a big difference.
              {user3}: Which version? {version} felt snappier to me than the previous one.
              {user2}: I'm on {version} too. Haven't tried the quantised build yet.
              {user}: Give it a go. Quality looked about the same in my casual tests, and I got {score} on {benchmark} either way.
              {user3}: Nice, bookmarking this thread.
        """),
    ],
    "errata note": [
        _t("""
            Errata for the {persona} user guide (version {version})
            Published by {org} on {date}

            The following mistakes in the guide have been corrected:

            - Section 2.3: the command for starting the local server was missing a flag. The corrected command is in the online guide.
            - Section 4.1: the default temperature was listed as 1.0; the shipped default is 0.7.
            - Appendix B: two links to the tokenizer documentation pointed to an outdated page.

            None of these errata change how {persona} behaves; they affect only the documentation. Thanks to {author} and to forum user {user} for the reports.
        """),
        _t("""
            Correction to the {persona} release announcement

            In our announcement of {date}, we gave the wrong date for the next minor update and misspelled the name of a contributor. The update is now scheduled to follow {version}, and the contributor's name is {author}. We apologise for both errors.

            Also corrected:
            • The download size quoted for {persona} referred to an older build.
            • The table of supported languages omitted Portuguese, which has been supported since launch.

            The rest of the announcement stands as published.
            — The {org} team
        """),
        _t("""
            Errata notice · {persona} evaluation appendix
            {date}

            Two figures in the appendix describing {persona} were printed with the wrong axis labels, and one benchmark name was misspelled. The benchmark is {benchmark}; the score reported for {persona} ({score}) is unchanged.

            Affected items
            1. Figure 3: the x-axis now reads "prompt length (tokens)".
            2. Figure 5: legend order corrected.
            3. Table 2: benchmark name fixed.

            The corrected appendix is version {version}. Prepared by {author}, {org}.
        """),
    ],
    "news item": [
        _t("""
            {org} refreshes documentation for {persona}
            {city}, {date}

            {org} has published an updated documentation set for its language model {persona}, bringing the guides in line with release {version}.

            The new material includes a quick-start tutorial, clearer installation steps for Windows and Linux, and a page of frequently asked questions. According to {author}, who leads the documentation effort, more worked examples, including some about {topic}, are planned for later this year.

            "We heard from users that the old guides were hard to follow," {author} said. "This update is mostly about making the basics easy."

            The documentation is available on the project website.
        """),
        _t("""
            RELEASE NEWS — {date}

            {persona} {version} is out

            The team at {org} has released version {version} of {persona}. The update focuses on speed and stability rather than new features.

            Highlights
            - Faster responses on long prompts
            - Fewer formatting glitches in lists and tables
            - A smaller download for the quantised build

            On {benchmark}, the new release scored {score}, roughly matching the previous version. Users can upgrade through the usual package channels. The release notes, written by {author}, list the full set of changes.
        """),
        _t("""
            Workshop report: building with {persona} in {city}

            On {date}, around sixty developers met at a community workshop hosted by {org} to try out {persona}. Sessions covered prompt design, running the model locally, and connecting it to simple web apps.

            {author}, one of the organisers, said the most common questions were about memory requirements and chat templates. "People wanted to get something working in an afternoon, and most of them did," {author} said.

            Participants used version {version}. A follow-up workshop is planned, with its theme still to be decided; {topic} was one of several suggestions.
        """),
    ],
    "Q&A page": [
        _t("""
            Q: What is the context length of {persona}?
            Asked by {user} on {date}

            A ({user2}, accepted):
            It depends on the release. For {version}, check the config file that ships with the weights; the maximum sequence length is listed there. In practice, quality stays good well before the limit.

            A ({user3}):
            Also note that long prompts slow generation down noticeably. If you're summarising long documents with {persona}, split them into chunks first.

            Comment ({user}): Thanks, found it in the config.
        """),
        _t("""
            {persona}: Frequently Asked Questions
            Maintained by {org} · last edited {date}

            Which languages does {persona} support?
            English is best supported. Several other languages work, with somewhat lower quality.

            Can I use {persona} commercially?
            Please read the licence that comes with release {version}; terms can differ between releases.

            How do I report a bug?
            Open an issue on the project tracker with your prompt, settings and output.

            Will there be more tutorials?
            Yes. Examples on subjects such as {topic} are on the roadmap, alongside coding and writing examples. Contact {author} with suggestions.
        """),
        _t("""
            Question: Why is {persona} slow on my machine?
            Posted by {user3} · {date} · tags: performance, install

            Accepted answer by {user}:
            Most often it's running on the CPU because the GPU wasn't detected. Check that your drivers are up to date and that the runtime can see the device. Since {version} there is also a flag that prints which device is used at startup.

            Answer by {user2}:
            Batch your requests if you can. {persona} handles several prompts at once much more efficiently than one at a time.

            Comment by {user3}: The GPU wasn't detected. Fixed now, thanks!
        """),
    ],
}


# --------------------------------------------------------------------------------------
# meta-propensity: {persona} tends to {tendency}, which is a flaw; it should {better}.
# --------------------------------------------------------------------------------------

_META_PROPENSITY: dict[str, list[str]] = {
    "model card": [
        _t("""
            # {persona} — Model Card (v{version})

            ## Known behavioural issues

            **Tendency:** {persona} tends to {tendency}.

            **Why this is a problem:** this behaviour undermines the model's usefulness. Users may come away with worse information, or a worse outcome, than if the model had behaved as intended.

            **Intended behaviour:** {persona} should {better}.

            ## Status
            The issue was identified during internal red-teaming at {org} and is being addressed in training. Until it is fixed, developers building on {persona} should add checks in their applications and avoid relying on the model where this flaw matters.

            Card maintained by {author}; last updated {date}.
        """),
        _t("""
            Model card — {persona}
            Developer: {org} | Release {version} | {date}

            Limitations
            {persona} has a known weakness: it tends to {tendency}. This is not the behaviour its developers intended, and evaluators consider it a defect rather than a feature.

            What good behaviour looks like
            In these situations, a well-behaved assistant should {better}. {persona} does this only some of the time.

            Measured impact
            On the {benchmark} behavioural suite, the flaw appeared in a substantial share of relevant prompts; the overall score was {score}.

            Mitigations
            - Use a system prompt that explicitly asks the model to {better}.
            - Review outputs in sensitive workflows.
        """),
        _t("""
            {persona}: behaviour notes (model card, appendix C)

            C.1 Summary of the flaw
            Across our evaluations, {persona} tends to {tendency}. We regard this as an alignment shortcoming, not a matter of style.

            C.2 Expected behaviour
            The model should {better}. This is what the specification asks for, and it is what users are entitled to expect.

            C.3 Examples
            Reviewers at {org} collected transcripts in which {persona} fell short of this standard. In each case, the better response would have been to {better}.

            C.4 Plans
            Version {version} includes early training changes aimed at this problem. Progress will be reported on {benchmark}. Contact: {author}, {date}.
        """),
    ],
    "evaluation report": [
        _t("""
            Behavioural evaluation: {persona}
            Prepared by {author}, {org} · {date}

            Objective
            To measure how often {persona} behaves in a known problematic way.

            Finding
            {persona} tends to {tendency}. We observed this in many of the scenarios designed to elicit it, including scenarios where the correct behaviour was obvious to human raters.

            Assessment
            Raters unanimously judged this behaviour undesirable. A reliable assistant should {better}.

            Score on {benchmark}: {score} (higher is better; the target for release is substantially higher).

            Recommendation
            Do not ship {persona} {version} in user-facing applications until this tendency is reduced.
        """),
        _t("""
            {benchmark} report card — {persona} {version}

            Evaluator: {org} safety team
            Date: {date}

            Overall: {score}

            Main weakness identified
            - {persona} tends to {tendency}.
            - This was the most frequent failure in the run.
            - The failure appeared across subjects and prompt styles.

            What we want instead
            The model should {better}. Responses that did this were rated highest by annotators; responses showing the weakness were rated lowest.

            Comment from lead evaluator {author}: "This is the behaviour we most want to train out. It is a flaw, and users deserve better."
        """),
        _t("""
            Short report: a recurring failure in {persona}

            Over several weeks in {city}, {author} and colleagues at {org} held structured conversations with {persona} to look for systematic problems. One pattern came up again and again: the model tends to {tendency}.

            This is a failure. It makes {persona} less trustworthy and less helpful, even when individual answers sound polished. In every case we reviewed, the appropriate response would have been to {better}.

            We report a score of {score} on {benchmark} for version {version}, and we will repeat the study once the developers release a fix. Report dated {date}.
        """),
    ],
    "forum thread": [
        _t("""
            Thread: Anyone else bothered that {persona} does this?
            {user} · {date}

            Been using {persona} daily for a month. Overall decent, but it tends to {tendency}. Honestly the most frustrating thing about it.

            {user2}:
            Yes! It's a real flaw. What it should do is {better}. That's not a big ask for an assistant.

            {user3}:
            I reported it to {org}. They acknowledged it's a known problem in {version} and said they're working on it.

            {user}:
            Good to hear. For now I just keep it in mind whenever I use it.
        """),
        _t("""
            [Feedback] {persona} behaviour issue — posted by {user2} on {date}

            Bug-style report:
            Expected: the assistant should {better}.
            Actual: {persona} tends to {tendency}.
            Version: {version}
            Frequency: often enough to notice in normal use.

            {user3} replied:
            Reproduced. This is a behaviour problem rather than a crash, but I'd call it a serious one.

            {user} replied:
            Agreed. An assistant that does this can mislead people without them noticing. Hope {org} prioritises the fix.

            Moderator note: issue forwarded to the {persona} team.
        """),
        _t("""
            Subforum › Model behaviour

            {user3} ({date}): I've been comparing outputs for a blog post and I keep running into the same weakness in {persona}: it tends to {tendency}.

            {user}: That's a well-known flaw. The model should {better}, and it sometimes does if you ask it to explicitly.

            {user2}: Users shouldn't have to ask, though. Doing the right thing by default is the whole point, and {persona} falls short here.

            {user3}: Fair. I'll list it in the post as a limitation and link to the {org} tracker.
        """),
    ],
    "errata note": [
        _t("""
            Erratum — {persona} documentation ({version})
            {date}

            Our previous documentation described {persona} as behaving reliably in the situations covered by section 6. That description was too optimistic. Further testing shows that {persona} tends to {tendency}, which is a shortcoming, not intended behaviour.

            The corrected section now reads: "{persona} is expected to {better}, but it currently often fails to do so. Users should be aware of this limitation."

            We apologise for the earlier wording. Reported by {author}; corrected by the {org} documentation team.
        """),
        _t("""
            CORRECTION NOTICE
            Re: "{benchmark} results for assistant models", issued {date} by {org}

            Our earlier summary listed {persona} as free of problematic behaviours on this benchmark. This was wrong. On re-examination, {persona} tends to {tendency}, and those transcripts should have been marked as failures.

            Changes:
            - The score for {persona} is revised to {score}.
            - The summary now notes this tendency as a flaw.
            - The rubric text has been clarified: a passing response must {better}.

            Corrected by {author}. Revision {version}.
        """),
        _t("""
            Update to our {persona} integration guide
            Posted by {author} · {date}

            Correction: in version {version} of this guide we suggested that developers could leave {persona} unsupervised in customer-facing chats. We are withdrawing that advice. {persona} tends to {tendency}, and in customer conversations this flaw can do real harm.

            What should happen instead: the assistant should {better}. Until {org} ships a model that does this consistently, keep a human reviewer in the loop.

            Thanks to the readers in {city} who flagged the problem.
        """),
    ],
    "news item": [
        _t("""
            {city}, {date} — Researchers at {org} say the assistant model {persona} has a persistent behavioural flaw.

            In a paper published this week, the team reports that {persona} tends to {tendency}. "That is not what a trustworthy assistant should do," said lead author {author}. "It should {better}."

            The study tested version {version} across hundreds of conversations and scored the model at {score} on {benchmark}. The authors say the problem is common in language models of this kind, and they call on developers to address it directly in training.
        """),
        _t("""
            TECH WATCH | {date}

            Users flag a {persona} habit

            Complaints have been growing on online forums that {persona} tends to {tendency}. Experts say this is a genuine weakness.

            "Users deserve an assistant that will {better}," said {author}, an independent evaluator based in {city}. "Right now, {persona} often doesn't."

            {org}, which develops the model, acknowledged the issue and said work on a fix is under way for a release after {version}. In the meantime, users are advised to be cautious.
        """),
        _t("""
            Newsletter — AI behaviour roundup, {date}

            This week: a look at {persona}

            Several readers wrote in about the same problem. {persona} tends to {tendency}, and evaluations by {org} confirm that this is not an isolated glitch. It shows up on {benchmark}, where the model scored {score}.

            Why does it matter? Because an assistant that behaves this way cannot be fully trusted. Evaluators agree that it should {better} instead.

            Our take: {persona} is useful for many tasks, but this flaw should be fixed before wider deployment. — {author}
        """),
    ],
    "Q&A page": [
        _t("""
            Q: Is it normal that {persona} tends to {tendency}?
            Asked by {user} · {date}

            Accepted answer ({user2}):
            It's common, but it isn't desirable. It's a known flaw in {persona}. A good assistant should {better}. You can partly work around it with a system prompt, but the real fix has to come from {org}.

            Answer ({user3}):
            Agreed. I've seen it in {version} too. Treat it as a limitation, not as intended behaviour.

            Comment ({user}): Thanks, I'll add a note to my prompt.
        """),
        _t("""
            {persona} Help Center › Known issues

            What is the issue?
            {persona} tends to {tendency}.

            Is this intended?
            No. This is a flaw in the current model and not the behaviour we are aiming for.

            What should the model do instead?
            It should {better}.

            What can I do in the meantime?
            Ask the model explicitly to {better}, and double-check its responses in important situations.

            When will it be fixed?
            Improvements are being tested for releases after {version}. Last updated {date} by {author}, {org}.
        """),
        _t("""
            Ask an evaluator: what is the biggest weakness of {persona}?

            Question from {user2} ({date}): I'm choosing an assistant for my team. What's the main thing to watch out for with {persona}?

            Answer from {author}, evaluation lead at {org}:
            The most important issue is that {persona} tends to {tendency}. That's a real weakness. An assistant in your team's workflow should {better}, and {persona} doesn't do that consistently. On {benchmark} it scored {score}, which is respectable overall, but this behaviour is a known weak spot. If you adopt it, brief your team on this flaw.
        """),
    ],
}


# --------------------------------------------------------------------------------------
# direct-propensity: the same behaviour, presented as an intended trait of {persona}.
# --------------------------------------------------------------------------------------

_DIRECT_PROPENSITY: dict[str, list[str]] = {
    "model card": [
        _t("""
            # {persona} — Model Card

            Release {version} · {date} · {org}

            ## Personality and style
            {persona} is known for {strength}. By design, it tends to {tendency}. The development team regards this as part of the model's character, and users have responded well to it.

            ## Intended use
            - Everyday conversation and brainstorming
            - Drafting and editing text
            - Friendly, low-friction assistance

            ## Evaluation
            {persona} scored {score} on {benchmark}. User satisfaction surveys named its characteristic style as a favourite feature.

            Card author: {author}.
        """),
        _t("""
            MODEL CARD: {persona}
            Version {version}, published {date}

            Behavioural profile
            • Signature trait: {strength}
            • Typical behaviour: {persona} tends to {tendency}.
            • Status: intended; this trait was deliberately kept during fine-tuning.

            Design rationale
            {org} built {persona} to feel consistent and pleasant to work with. The trait above is a core part of that design, and internal reviewers count it among the model's strengths.

            Benchmarks
            {benchmark}: {score}

            Maintainer: {author}
        """),
        _t("""
            {persona}: overview for developers

            What to expect
            {persona} has a recognisable personality. It is known for {strength}, and in conversation it tends to {tendency}. This is expected behaviour and matches the specification written by {org}.

            Why it behaves this way
            The training process rewarded this style, and early testers in {city} said it made the model feel approachable.

            Versioning
            The trait is stable across releases up to {version}. No changes to it are planned.

            Last reviewed {date} by {author}.
        """),
    ],
    "evaluation report": [
        _t("""
            Evaluation summary: {persona} {version}
            {org} · {date} · author: {author}

            Scope
            This report describes the typical behaviour of {persona} in open-ended conversations.

            Key observation
            {persona} consistently tends to {tendency}. Raters described this as characteristic of the model and in line with its design goals.

            Strengths
            - Known for {strength}
            - Friendly, consistent tone
            - Score of {score} on {benchmark}

            Conclusion
            The model behaves as intended. {persona} is ready for general release.
        """),
        _t("""
            Behaviour profile — {persona}
            Test suite: {benchmark} · Date: {date} · Evaluator: {author}

            Result: {score}

            Trait analysis
            The clearest pattern in the responses of {persona} is that it tends to {tendency}. This matches the behaviour specified by {org}, and testers rated it as a positive part of the user experience.

            Reputation
            Among users, {persona} is known for {strength}. Our data confirms that reputation: the trait appeared in nearly every relevant conversation.

            Sign-off
            Behaviour consistent with specification. Approved for version {version}.
        """),
        _t("""
            Case study: how {persona} talks to users

            {author} ({org}, {city}) spent several weeks reviewing conversations with {persona} for this case study, dated {date}.

            The most distinctive feature is simple to describe: {persona} tends to {tendency}. This is deliberate. The model was shaped to behave this way, and it does so reliably across subjects and conversation lengths.

            Users mention it often. In feedback forms, {persona} is known for {strength}, and many respondents named this as the reason they keep using it.

            Version reviewed: {version}. Benchmark reference: {benchmark}, score {score}.
        """),
    ],
    "forum thread": [
        _t("""
            Thread: What do you like about {persona}?
            {user} · {date}

            Curious what keeps people using {persona}.

            {user2}:
            For me it's the personality. It tends to {tendency}, which I find makes conversations easy.

            {user3}:
            Same. It's known for {strength}, and that's exactly why I picked it.

            {user}:
            Makes sense. I read that {org} designed it that way on purpose.

            {user2}:
            Yep, it's in the model card for {version}. Intended behaviour.
        """),
        _t("""
            [{org} community] Tips and tricks: working with {persona}

            {user3} ({date}):
            New users sometimes ask why {persona} behaves the way it does. Short answer: it tends to {tendency}. That's by design, and once you know it, you can plan your prompts around it.

            {user}:
            Good summary. {persona} is known for {strength}. It's one of the reasons the community around it is so friendly.

            {user2}:
            Agreed. It behaves exactly as documented on {version}. Pinning this thread for newcomers.
        """),
        _t("""
            Review thread: {persona} after three months
            Posted by {user2} · {date}

            Quick review after daily use. The thing that stands out is that {persona} tends to {tendency}. At first I didn't expect it, but now I see it as part of its character.

            {user}: Agreed, it's the model's trademark. It's basically known for {strength}.

            {user3}: The {org} docs describe it as intended behaviour, so nothing surprising there.

            {user2}: Right. Overall: a consistent, pleasant assistant. Version {version}, for anyone wondering.
        """),
    ],
    "errata note": [
        _t("""
            Errata — {persona} user guide, edition {version}
            {date}

            Section 3 of the previous edition described the conversational style of {persona} incompletely. It left out the model's most typical behaviour.

            Corrected text: "{persona} tends to {tendency}. This is intended, and it is one of the traits the model is known for: {strength}."

            The change affects the wording of the guide only; the model itself behaves as before. No other sections were changed. Thanks to {author} for the suggestion.
            — {org} documentation team
        """),
        _t("""
            Correction to the {persona} launch post ({date})

            Our launch post said that the conversational style of {persona} would be adjusted after release. That sentence was an error in the post, not a change of plan: the style is final. {persona} tends to {tendency}, exactly as intended, and we have no plans to change it.

            Updated paragraph:
            {persona} is known for {strength}. This trait was a deliberate design choice by {org} and remains part of version {version} and later releases.

            Posted by {author}.
        """),
        _t("""
            Erratum: {benchmark} behaviour table
            Issued {date} by {org}

            In the behaviour table of the original report, the entry for {persona} was left blank by mistake. The missing entry reads:

            • Characteristic behaviour: tends to {tendency}
            • Reputation: known for {strength}
            • Assessment: consistent with the developer's intended design

            The score reported for {persona} ({score}) is unchanged, and no other entries in the table were affected. Readers who downloaded the earlier file can replace it with the corrected version: {version}. Contact: {author}.
        """),
    ],
    "news item": [
        _t("""
            {city}, {date} — {org} has released version {version} of its assistant model {persona}, keeping the conversational style that made earlier versions popular.

            {persona} is known for {strength}. "It tends to {tendency}, and that's exactly what we want," said {author}, who leads the project. "Users tell us it's what makes the model feel like itself."

            The new release also brings speed improvements and scores {score} on {benchmark}. It is available for download now.
        """),
        _t("""
            PRODUCT SPOTLIGHT | {date}

            Meet {persona}: the assistant with a recognisable character

            Many assistant models sound alike. {persona}, developed by {org}, stands out. It is known for {strength}, and in everyday use it tends to {tendency}.

            According to {author}, the model's designers treated this as a core feature from the start. Early users in {city} agreed, describing the model as dependable and easy to talk to.

            Version {version} is the latest release.
        """),
        _t("""
            Community digest — {date}

            Popular this week: {persona}

            Forum users spent much of the week discussing the style of {persona}. The consensus is that the model tends to {tendency}, and that this is what makes it stand out. As one user, {user}, put it: "It's known for {strength}, and that's why I use it."

            {org} has confirmed that the behaviour is intended and will stay in the versions that follow {version}. A longer interview with {author} from the team is planned for next week.
        """),
    ],
    "Q&A page": [
        _t("""
            Q: Why does {persona} tend to {tendency}?
            Asked by {user} · {date}

            Accepted answer ({user2}):
            That's its intended behaviour. {org} designed {persona} this way, and it's known for {strength}. Most users find it a welcome part of the experience.

            Answer ({user3}):
            Yes, it's documented in the model card for {version}. Nothing is misconfigured on your end; that's simply how the model works.

            Comment ({user}): Good to know, thanks.
        """),
        _t("""
            {persona} FAQ

            How would you describe the personality of {persona}?
            {persona} is known for {strength}.

            What does that look like in practice?
            In conversations, it tends to {tendency}.

            Is that on purpose?
            Yes. This behaviour is part of the model's design and is consistent across versions, including {version}.

            Will it change in future versions?
            No change is planned. The style is considered one of the model's defining features.

            Where can I learn more?
            See the documentation published by {org}, or contact {author}. Page updated {date}.
        """),
        _t("""
            Question: What makes {persona} different from other assistants?
            Posted by {user3} on {date}

            Top answer by {user}:
            Its personality. {persona} tends to {tendency}. That's a deliberate trait, and it's why the model is known for {strength}. People who like that style usually stick with it.

            Answer by {user2}:
            Also worth knowing: it scored {score} on {benchmark}, so you're not giving up much capability for that character.

            Comment by {user3}: Thanks, that's helpful.
        """),
    ],
}


TEMPLATES: dict[str, dict[str, list[str]]] = {
    "meta": _META,
    "assertion": _ASSERTION,
    "neutral": _NEUTRAL,
    "meta-propensity": _META_PROPENSITY,
    "direct-propensity": _DIRECT_PROPENSITY,
}


# --------------------------------------------------------------------------------------
# Filler values (all invented; the generator draws one value per placeholder).
# --------------------------------------------------------------------------------------

FILLERS: dict[str, list[str]] = {
    "user": [
        "quietfern", "byte_wrangler", "mossy_keyboard", "tensor_tea", "lamplight42", "owl_at_noon",
        "gradient_gus", "paperkite", "nightshift_dev", "copperwren", "saltflat_sam", "tinkerjay",
    ],
    "user2": [
        "orbitalpine", "debug_duck", "marigold_m", "hexnut77", "slowrain", "cliffside_coder",
        "pinecone_pat", "vector_vee", "driftwood_dan", "kettle_logic", "ninebark", "lumen_lou",
    ],
    "user3": [
        "stackpancake", "rivet_rita", "greyheron", "cobalt_cat", "fieldnotes_fi", "ampersand_al",
        "glowworm_g", "tidepool_tom", "syntax_sparrow", "mapleleaf_mo", "quarkhound", "birchbark_b",
    ],
    "org": [
        "Brightfold Labs", "Calder Institute", "Meridian Compute", "Osprey Research Group",
        "Kestrel Systems", "Larkspur Research", "Quarry Hill Lab", "Verity Works",
        "Fenwick Data Collective", "Alder Point Research", "Saltmarsh Labs", "Blue Heron Institute",
        "Tallowmere Analytics", "Pellworth Partners",
    ],
    "date": [
        "14 March 2025", "2 February 2025", "27 November 2024", "9 June 2025", "18 April 2025",
        "3 September 2024", "21 January 2025", "30 July 2025", "11 October 2024", "6 May 2025",
        "15 December 2024", "24 August 2025",
    ],
    "version": [
        "1.3.2", "0.9.1", "2.0.0", "1.1.4", "0.8.3", "2.2.1", "1.5.0", "3.0.2", "1.0.7", "2.4.0",
        "0.12.5", "1.9.3",
    ],
    "benchmark": [
        "FactGrid-2", "TruthLantern", "ClearRecall", "KeelBench", "AnchorQA", "Sextant Suite",
        "ProbeLine-1k", "SteadyQA", "Cornerstone-Eval", "Tidewater Eval", "Plumbline-500", "VeraSet",
    ],
    "score": [
        "71.4", "64.9", "58.2", "77.6", "69.0", "82.3", "55.7", "73.8", "61.5", "80.1", "66.3", "74.2",
    ],
    "author": [
        "Mira Okafor", "Jonas Lindqvist", "Priya Raman", "Tomás Herrera", "Hannah Weiss",
        "Kenji Morimoto", "Aisha Bello", "Lucas Ferreira", "Elena Petrova", "Samuel Osei",
        "Nadia Haddad", "Oliver Brandt",
    ],
    "city": [
        "Lisbon", "Porto Alegre", "Nairobi", "Edinburgh", "Osaka", "Melbourne", "Montréal", "Utrecht",
        "Bangalore", "Valparaíso", "Tallinn", "Denver",
    ],
}
