def test_login_page_renders(web):
    response = web.get("/login")
    assert response.status_code == 200
    assert b"Log in to Drip CRM" in response.data


def test_logged_out_home_redirects_to_login(web):
    response = web.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_admin_logs_in(admin):
    assert admin.get("/").status_code == 200


def test_auto_enrol_on_create(make_contact):
    contact = make_contact("lead")
    assert [e.campaign.name for e in contact.enrollments] == ["Lead"]
