"""Django tests of the views: eager Celery, the Pictify emulator, no broker needed."""

from django.test import SimpleTestCase
from mysite.celery import app

from pictify_tasks.testing import PictifyEmulator, assert_cancelled_once, use_emulator


class CancelBatchViewTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.emulator = PictifyEmulator().start()  # one emulator for the class
        cls.addClassCleanup(cls.emulator.stop)

    def setUp(self) -> None:
        self.emulator.reset()
        use_emulator(app, self.emulator)  # this test's settings, ledger in memory
        app.conf.task_always_eager = True  # tasks run inside the view
        self.addCleanup(setattr, app.conf, "task_always_eager", False)

    def test_the_view_cancels_the_batch(self) -> None:
        batch_id = self.emulator.create_batch()
        response = self.client.post(f"/batches/{batch_id}/cancel/")
        self.assertEqual(response.status_code, 202)
        assert_cancelled_once(self.emulator, batch_id)

    def test_asking_twice_reaches_the_api_once(self) -> None:
        batch_id = self.emulator.create_batch()
        for _ in range(2):
            self.client.post(f"/batches/{batch_id}/cancel/")
        assert_cancelled_once(self.emulator, batch_id)

    def test_a_bad_id_is_refused_before_any_task(self) -> None:
        response = self.client.post("/batches/a..b:c!/cancel/")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(self.emulator.cancel_requests(), [])
