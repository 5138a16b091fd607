"""Merge-field rendering in the sandbox and the checks a template passes before saving."""

from __future__ import annotations

import pytest

from crm_app.drip.campaigns.rendering import (
    SAMPLE_CONTACT,
    TemplateRenderError,
    build_context,
    check_template,
    contact_context,
    empty_merge_fields,
    render_email,
)
from crm_app.models import Contact

SENDER = {
    "name": "Sam Carter",
    "first_name": "Sam",
    "title": "Partner",
    "company": "Carter & Co",
    "email": "sam@carter.example",
    "phone": "+1 555 0199",
    "website": "https://carter.example",
}


def contact(**fields) -> dict:
    return {**SAMPLE_CONTACT, "custom": {}, **fields}


def render(html: str, text: str | None = None, subject: str = "Hello", **fields):
    context = build_context(contact(**fields), SENDER)
    return render_email(subject, html, html if text is None else text, context)


def test_merge_fields_fill_contact_company_and_sender_data():
    email = render(
        "{{ contact.first_name }} at {{ company.name }} from {{ sender.name }}, "
        "{{ sender.company }} ({{ contact.custom.met_at }})",
        subject="Hi {{ contact.first_name }}",
        custom={"met_at": "the summit"},
    )
    assert email.subject == "Hi Alex"
    assert email.text == "Alex at Northwind Traders from Sam Carter, Carter & Co (the summit)"


def test_default_filter_falls_back_when_a_field_is_empty():
    source = 'Hi {{ contact.first_name | default("there", true) }},'
    assert render(source, first_name="").text == "Hi there,"
    assert render(source, first_name="Jo").text == "Hi Jo,"


def test_conditional_block_renders_only_when_the_field_is_set():
    source = "Thanks{% if contact.company %} from {{ contact.company }}{% endif %}."
    assert render(source, company="Acme").text == "Thanks from Acme."
    assert render(source, company="").text == "Thanks."


def test_html_part_escapes_contact_data_but_text_part_keeps_it_raw():
    name = "<script>alert(1)</script>"
    email = render(
        "<p>Hi {{ contact.first_name }}</p>", text="Hi {{ contact.first_name }}", first_name=name
    )
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert email.html.startswith("<p>")  # the template's own markup is kept
    assert email.text == f"Hi {name}"


def test_python_internals_are_rejected_by_the_check():
    errors = check_template("{{ ''.__class__.__mro__ }}")
    assert errors
    assert any("__class__" in e and "not allowed" in e for e in errors)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ contact['__class__'] }}",
        "{{ contact | attr('__class__') }}",
        "{{ contact.custom.__class__.__subclasses__() }}",
    ],
)
def test_python_internals_fail_safely_when_rendered(source):
    assert check_template(source)
    with pytest.raises(TemplateRenderError) as raised:
        render(source)
    message = str(raised.value)
    assert "<class" not in message and "object at 0x" not in message


def test_custom_fields_named_like_dict_methods_render_their_values():
    person = Contact(
        email="ada@example.com",
        first_name="Ada",
        contact_type="lead",
        custom_fields={"items": "ten crates", "keys": "the spares", "get": "Tuesday"},
    )
    context = build_context(contact_context(person), SENDER)
    source = (
        "{{ contact.custom.items }} / {{ contact.custom.keys }} / {{ contact.custom.get }} / "
        "{{ contact.custom['items'] }} / {{ contact.custom.get('keys') }} / "
        "{{ contact.custom.values | default('none') }} / {{ contact.custom['pop'] | default('-') }}"
        "{% if contact.custom.get %} / set{% endif %}"
    )
    email = render_email("{{ contact.custom.items }}", source, source, context)
    assert email.subject == "ten crates"
    expected = "ten crates / the spares / Tuesday / ten crates / the spares / none / - / set"
    assert email.text == expected
    assert email.html == expected
    # A call is still the method; mutating ones stay refused.
    loop = "{% for k, v in contact.custom.items() %}{{ k }}={{ v }};{% endfor %}"
    assert render(loop, custom={"a": "1"}).text == "a=1;"
    with pytest.raises(TemplateRenderError):
        render("{{ contact.custom.pop('items') }}", custom={"items": "x"})


def test_empty_merge_fields_lists_custom_fields_named_like_dict_methods():
    source = "{{ contact.custom.items }} {{ contact.custom.get }} {{ contact.custom.get('x') }}"
    lacking = build_context(contact(custom={"x": "1"}), SENDER)
    assert empty_merge_fields([source], lacking) == ["contact.custom.get", "contact.custom.items"]
    having = build_context(contact(custom={"x": "1", "items": "2", "get": "3"}), SENDER)
    assert empty_merge_fields([source], having) == []


def test_a_template_cannot_mutate_the_context():
    with pytest.raises(TemplateRenderError):
        render("{{ contact.custom.update({'x': 1}) }}")


def test_runaway_templates_are_stopped_instead_of_eating_memory():
    with pytest.raises(TemplateRenderError, match="too"):
        render("{{ 'x' * 10 ** 9 }}")
    with pytest.raises(TemplateRenderError, match="too large"):
        render("{{ (10 ** 100) ** 100 }}")
    with pytest.raises(TemplateRenderError, match="too much work"):
        render("{% for i in range(100000) %}{% for j in range(100) %}xxxx{% endfor %}{% endfor %}")
    with pytest.raises(TemplateRenderError, match="too long"):
        render("{% for i in range(100000) %}" + "x" * 25 + "{% endfor %}")
    # Ordinary arithmetic still works.
    assert render("{{ 3 * 4 }} {{ 2 ** 8 }}").text == "12 256"


def test_syntax_error_is_reported_with_its_line_number():
    errors = check_template("Hi {{ contact.first_name }},\n\nSee you {{ contact.company }\nBye")
    assert len(errors) == 1
    assert errors[0].startswith("Syntax error on line 3:")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ contact.favourite_colour }}", "contact.favourite_colour"),
        ("{{ contact['favourite_colour'] }}", "contact.favourite_colour"),
        ("{{ user.name }}", "'user'"),
        ("{{ sender.password }}", "sender.password"),
    ],
)
def test_unknown_merge_fields_are_rejected(source, expected):
    errors = check_template(source)
    assert len(errors) == 1
    assert expected in errors[0]
    assert "Unknown merge field" in errors[0]


def test_known_fields_loops_and_custom_fields_pass_the_check():
    source = (
        '{{ contact.first_name | default("there", true) }} {{ company.industry }} '
        "{{ contact.custom.get('interest') }} {% set n = 2 %}{{ n }}"
        "{% for i in range(2) %}{{ loop.index }}{% endfor %}"
    )
    assert check_template(source) == []


def test_unknown_field_at_render_time_is_an_error_not_an_empty_string():
    with pytest.raises(TemplateRenderError, match="favourite_colour"):
        render("{{ contact.favourite_colour }}")


def test_empty_merge_fields_lists_what_the_template_uses_and_this_contact_lacks():
    sources = [
        "Hi {{ contact.first_name }}",
        "{{ contact.title }} at {{ company.name }} {{ contact.phone }} {{ sender.title }}",
        "{{ contact.custom.get('met_at') }} {{ contact.custom['interest'] }}",
        "{{ contact.custom.x }}",
    ]
    sender = SENDER | {"title": ""}
    context = build_context(contact(first_name="", company="", phone="+1 555"), sender)
    assert empty_merge_fields(sources, context) == [
        "company.name",
        "contact.custom.interest",
        "contact.custom.met_at",
        "contact.custom.x",
        "contact.first_name",
        "sender.title",
    ]
    full = contact(custom={"met_at": "the fair", "interest": "x", "x": "y"})
    assert empty_merge_fields(sources, build_context(full, SENDER)) == []


def test_a_custom_field_the_contact_lacks_renders_as_nothing_or_its_fallback():
    """A custom field belongs to some contacts only: for the others it is empty and
    false, and its fallback applies; a typo in a merge field is still an error."""
    context = build_context(dict(SAMPLE_CONTACT, custom={}), SENDER)
    rendered = render_email(
        "Plan: {{ contact.custom.plan }}|{{ contact.custom.plan | default('basic') }}"
        "|{% if contact.custom.plan %}yes{% else %}no{% endif %}",
        "",
        "",
        context,
    )
    assert rendered.subject == "Plan: |basic|no"
    with pytest.raises(TemplateRenderError):
        render_email("{{ contact.frist_name }}", "", "", context)


@pytest.mark.parametrize("fallback", ['default("there")', 'd("there")', 'default("there", true)'])
def test_the_documented_fallback_applies_to_an_empty_field(fallback):
    """product.md's `{{ contact.first_name | default("there") }}`: a contact without a
    first name reads "Hi there,", not "Hi ," (its merge field is "", not undefined)."""
    context = build_context(dict(SAMPLE_CONTACT, first_name=""), SENDER)
    rendered = render_email(f"Hi {{{{ contact.first_name | {fallback} }}}},", "", "", context)
    assert rendered.subject == "Hi there,"
